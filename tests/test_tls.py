"""`--tls`: the plaintext of a traced process's TLS calls, from uprobes on the system's libssl
and libgnutls, against a fake model served over HTTPS on 127.0.0.1 with a CA made here
(tests/fake_model.py). Clients are real: Python's urllib (OpenSSL, SSL_*_ex), curl (OpenSSL,
its own BIO: send/recv), and the Node binary here (its OpenSSL is linked in statically: the
case swatch must name as not covered). Secrets the clients send are checked on the server's
side (they were really sent) and grepped for in every output swatch wrote.

Debian 12's own nodejs does link the system's OpenSSL (its runtime, libnode108, depends on
libssl3), but it is not installed here: the machine's Node.js 20 is NodeSource's `nodejs`,
which Provides nodejs-legacy, which libnode108 Conflicts with — Debian's would have to replace
it (a downgrade to 18 of the machine's node and npm). So Node over the system libssl is not
tested; any process calling the system libssl is covered the same way (Python's and curl's)."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import SWATCH, read_events, swatch, wait_for
from fake_model import TOOL_CALLS, FakeModelServer, make_certs

SECRETS = ["sk-swatchtest0123456789abcdef", "AKIAABCDEFGHIJKLMNOP", "cookie-secret-value",
           "xapikey-swatch-987", "sess-cookie-123"]
CLIENT = r"""
import json, ssl, sys, urllib.request
ca, url, stream = sys.argv[1], sys.argv[2], sys.argv[3] == "stream"
body = {"model": "fake-gpt", "stream": stream,
        "messages": [{"role": "system", "content": "be brief"},
                     {"role": "user", "content": "list /tmp; key AKIAABCDEFGHIJKLMNOP"}],
        "tools": [{"type": "function", "function": {"name": "run_shell"}},
                  {"type": "function", "function": {"name": "read_file"}}]}
if url.endswith("/messages"):
    body["tools"] = [{"name": "run_shell", "input_schema": {}},
                     {"name": "read_file", "input_schema": {}}]
req = urllib.request.Request(url, data=json.dumps(body).encode(), headers={
    "Authorization": "Bearer sk-swatchtest0123456789abcdef", "x-api-key": "xapikey-swatch-987",
    "Cookie": "sess=sess-cookie-123", "Content-Type": "application/json",
    "anthropic-version": "2023-06-01"})
with urllib.request.urlopen(req, context=ssl.create_default_context(cafile=ca)) as resp:
    sys.stdout.write(resp.read().decode()[:40])
"""


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    d = tmp_path_factory.mktemp("tls")
    ca, cert, key = make_certs(d)
    with FakeModelServer(cert, key) as server:
        server.ca = ca  # type: ignore[attr-defined]
        server.dir = d  # type: ignore[attr-defined]
        yield server


def no_secret(*outputs: str) -> None:
    for out in outputs:
        for secret in SECRETS:
            assert secret not in out, f"{secret!r} leaked: ...{out[out.find(secret) - 200:][:400]}"


def client_file(model: FakeModelServer) -> str:
    path = model.dir / "client.py"  # type: ignore[attr-defined]
    path.write_text(CLIENT)
    return str(path)


def run_json(model: FakeModelServer, tmp_path: Path, argv: list[str],
             *extra: str) -> tuple[subprocess.CompletedProcess, list[dict], str]:  # type: ignore[type-arg]
    out = tmp_path / "trace.jsonl"
    before = len(model.received)
    proc = swatch("run", "--tls", "--json", "-o", str(out), *extra, "--", *argv)
    assert proc.returncode == 0, model.side(proc.stderr)
    assert len(model.received) > before, "the client reached the server"
    return proc, read_events(out), out.read_text()


def expected_calls() -> list[dict]:  # type: ignore[type-arg]
    return [{"name": n, "arguments": a} for n, a in TOOL_CALLS]


def test_python_openai_exact_plaintext_http_llm_and_redaction(model, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    url = model.url + "/v1/chat/completions"
    proc, recs, raw = run_json(model, tmp_path, [sys.executable, client_file(model), str(model.ca),
                                                 url, "plain"])
    path, headers, body = model.received[-1]
    assert headers["Authorization"] == "Bearer sk-swatchtest0123456789abcdef"  # really sent
    tls = [r for r in recs if r["type"] == "tls"]
    writes = [r for r in tls if r["op"] == "write"]
    # The request body went out in one SSL_write_ex: exactly its bytes, the AWS key redacted.
    body_rec = [r for r in writes if r["data"].startswith("{")]
    assert len(body_rec) == 1
    assert body_rec[0]["data"] == body.decode().replace("AKIAABCDEFGHIJKLMNOP", "[REDACTED]")
    assert body_rec[0]["bytes"] == body_rec[0]["captured"] == len(body)
    # The socket: the fd the client connected, to the server's address.
    connects = [r for r in recs if r["type"] == "syscall" and r["syscall"] == "connect"
                and r.get("addr") == f"127.0.0.1:{model.server_address[1]}"]
    assert connects, "the connect is in the trace"
    fd = connects[0]["args"][0]
    for r in tls:
        assert r["fd"] == fd and r["fd_from"] in ("syscall", "connection"), r
        assert r["peer"] == {"proto": "TCP", "addr": "127.0.0.1", "port": model.server_address[1]}
        assert r["lib"] == "openssl" and r["pid"] == connects[0]["pid"]
    http = [r for r in recs if r["type"] == "http"]
    assert [(h["direction"], h.get("method"), h.get("target"), h.get("status")) for h in http] \
        == [("request", "POST", "/v1/chat/completions", None), ("response", None, None, 200)]
    req_headers = {k.lower(): v for k, v in http[0]["headers"]}  # urllib capitalizes names
    assert req_headers["authorization"] == "[REDACTED]"
    assert req_headers["x-api-key"] == "[REDACTED]" and req_headers["cookie"] == "[REDACTED]"
    assert req_headers["content-type"] == "application/json"
    assert http[0]["body_bytes"] == len(body) and http[0]["complete"]
    assert dict(map(tuple, http[1]["headers"]))["Set-Cookie"] == "[REDACTED]"
    llm = [r for r in recs if r["type"] == "llm"]
    assert [r["kind"] for r in llm] == ["request", "response"]
    assert llm[0]["model"] == "fake-gpt" and llm[0]["messages"] == 2
    assert llm[0]["tools"] == ["run_shell", "read_file"] and not llm[0]["stream"]
    assert llm[0]["api"] == "openai"
    assert llm[1]["tool_calls"] == expected_calls()
    assert llm[1]["tokens"] == {"input": 42, "output": 17}
    assert llm[1]["finish_reason"] == "tool_calls" and llm[1]["model"] == "fake-gpt"
    no_secret(raw, proc.stdout, proc.stderr)


def test_python_anthropic_streamed_human_lines(model, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    url = model.url + "/v1/messages"
    proc = swatch("run", "--tls", "-e", "connect", "--", sys.executable, client_file(model),
                  str(model.ca), url, "stream")
    assert proc.returncode == 0, model.side(proc.stderr)
    lines = proc.stderr.splitlines()
    llm = [line.split(" LLM ", 1)[1].strip() for line in lines if " LLM     " in line]
    assert llm == [
        "REQUEST model=fake-gpt messages=2 tools=[run_shell, read_file] stream",
        'RESPONSE tool_calls=[run_shell({"cmd":"ls /tmp","timeout":5}), '
        'read_file({"path":"/etc/hostname"})] tokens=30/12 finish=tool_use (streamed)'], llm
    http = [line.split(" HTTP ", 1)[1].strip() for line in lines if " HTTP    " in line]
    assert http[0].startswith("> POST /v1/messages HTTP/1.1 (host 127.0.0.1:")
    assert http[1].startswith("< HTTP/1.1 200 OK (4 headers, text/event-stream, body ")
    assert " chunked) on fd " in http[1]
    tls = [line for line in lines if " TLS     " in line]
    assert any(f"WRITE {len(model.received[-1][2])} bytes on fd " in t for t in tls)
    assert all(f"(TCP 127.0.0.1:{model.server_address[1]})" in t for t in tls)
    assert "swatch: TLS: 2 writes," in proc.stderr
    no_secret(proc.stdout, proc.stderr)


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is in APT_TEST: make deps")
def test_curl_openai_streamed(model, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    body = json.dumps({"model": "fake-gpt", "stream": True, "messages": [{"role": "user",
                       "content": "hi"}], "tools": [{"type": "function",
                                                     "function": {"name": "run_shell"}}]})
    # the secrets from a file: on the command line they would be in the EXEC line's argv,
    # which --tls does not redact (the tracer's record)
    headers = tmp_path / "headers"
    headers.write_text("Authorization: Bearer sk-swatchtest0123456789abcdef\n"
                       "Cookie: sess=sess-cookie-123\nContent-Type: application/json\n")
    proc, recs, raw = run_json(model, tmp_path, [
        "curl", "-sS", "--cacert", str(model.ca), "-H", f"@{headers}", "--data-binary", body,
        model.url + "/v1/chat/completions"])
    assert "[DONE]" in proc.stdout
    assert model.received[-1][1]["Authorization"].endswith("sk-swatchtest0123456789abcdef")
    tls = [r for r in recs if r["type"] == "tls"]
    assert tls and all(r["comm"] == "curl" and r["fd_from"] in ("syscall", "connection")
                       for r in tls)
    assert len({r["fd"] for r in tls}) == 1 and tls[0]["fd"] is not None
    assert body in "".join(r["data"] for r in tls if r["op"] == "write")
    llm = [r for r in recs if r["type"] == "llm"]
    assert [r["kind"] for r in llm] == ["request", "response"]
    assert llm[0]["tools"] == ["run_shell"] and llm[0]["stream"]
    assert llm[1]["stream"] and llm[1]["tool_calls"] == expected_calls()
    assert llm[1]["tokens"] == {"input": 42, "output": 17}
    http = [r for r in recs if r["type"] == "http" and r["direction"] == "response"]
    assert http[0]["chunked"] and http[0]["content_type"] == "text/event-stream"
    no_secret(raw, proc.stdout, proc.stderr)


NODE = r"""
const https = require('https'); const fs = require('fs');
const req = https.request(process.argv[3], {method: 'POST', ca: fs.readFileSync(process.argv[2]),
  headers: {'content-type': 'application/json'}}, res => {
  res.on('data', () => {}); res.on('end', () => {
    process.stdout.write('done\n'); process.stdin.on('data', () => {});
    process.stdin.on('end', () => process.exit(0)); });
});
req.end(JSON.stringify({model: 'm', messages: []}));
"""


def node_links_libssl() -> bool | None:
    node = shutil.which("node")
    if node is None:
        return None
    out = subprocess.run(["ldd", node], capture_output=True, text=True).stdout
    return "libssl" in out


@pytest.mark.skipif(node_links_libssl() is not False, reason="needs a node with its OpenSSL "
                    "linked in (not Debian's nodejs)")
def test_node_static_openssl_named_not_covered(model, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Node's OpenSSL is inside the node binary: no uprobe sees it. swatch says so while the
    process runs (it keeps its connection until its stdin closes) and in the summary."""
    script = tmp_path / "client.js"
    script.write_text(NODE)
    p = subprocess.Popen([SWATCH, "run", "--tls", "-e", "connect", "--", "node", str(script),
                          str(model.ca), model.url + "/v1/chat/completions"],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True)
    seen = []
    try:
        for line in p.stderr:  # type: ignore[union-attr]
            seen.append(line)
            if "maps no libssl/libgnutls" in line:
                break
        out, err = p.communicate(input="", timeout=60)  # closes node's stdin: it ends
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    stderr = "".join(seen) + err
    assert p.returncode == 0, model.side(stderr)
    assert out == "done\n"
    assert " (node) has TCP connections but maps no libssl/libgnutls: its TLS plaintext is " \
        "NOT seen" in stderr
    assert "TLS: NOT covered: pid " in stderr and "(node) used TCP with no libssl" in stderr
    assert " TLS " not in stderr.replace("TLS plaintext", "").replace("TLS: ", "") \
        .replace("--tls", ""), "no plaintext line for an uncovered process"
    assert " CONNECT " in stderr  # the rest is traced


def test_no_tls_library_mapped_traces_the_rest() -> None:
    proc = swatch("run", "--tls", "--", "/bin/sh", "-c", "echo hi > /dev/null")
    assert proc.returncode == 0, proc.stderr
    assert " EXEC " in proc.stderr
    assert "swatch: TLS: no traced process mapped libssl or libgnutls: no TLS plaintext to see" \
        in proc.stderr


ARGV_SECRETS = ["bearer-secret-64", "flagvalue-secret-31", "envvalue-secret-42",
                "eqtoken-secret-53", "sk-argvtest0123456789"]
SECRET_ARGS = ["-H", "Authorization: Bearer bearer-secret-64", "--api-key", "flagvalue-secret-31",
               "OPENAI_API_KEY=envvalue-secret-42", "--token=eqtoken-secret-53",
               "--prompt", "use sk-argvtest0123456789 now", "--model", "fake-gpt"]
REDACTED_ARGS = ["-H", "Authorization: [REDACTED]", "--api-key", "[REDACTED]",
                 "OPENAI_API_KEY=[REDACTED]", "--token=[REDACTED]",
                 "--prompt", "use [REDACTED] now", "--model", "fake-gpt"]


def test_exec_argv_secrets_redacted_in_every_sink(tmp_path: Path) -> None:
    """Secrets on a command line (a header, a flag's value, NAME=VALUE, --flag=VALUE, a key
    anywhere) are [REDACTED] in EXEC records and the run summary, human and JSON, on stderr
    and in -o files, with --tls and without (redaction of argv is always on)."""
    argv = ["/bin/sh", "-c", 'exec /bin/true "$@"', "sh", *SECRET_ARGS]
    with_tls = swatch("run", "--tls", "--json", "--", *argv)      # JSON lines + summary: stderr
    assert with_tls.returncode == 0, with_tls.stderr
    execs = [json.loads(line) for line in with_tls.stderr.splitlines()
             if line.startswith("{") and '"type":"exec"' in line.replace(" ", "")]
    assert [e["argv"] for e in execs] == [["/bin/sh", "-c", 'exec /bin/true "$@"', "sh",
                                           *REDACTED_ARGS], ["/bin/true", *REDACTED_ARGS]]
    summary = [json.loads(line) for line in with_tls.stderr.splitlines()
               if line.startswith('{"type": "summary"')]
    assert summary and summary[0]["command"][4:] == REDACTED_ARGS
    human = tmp_path / "trace.txt"
    plain = swatch("run", "-o", str(human), "--", *argv)            # human, to a file
    assert plain.returncode == 0, plain.stderr
    text = human.read_text()
    assert re.search(r'EXEC +/bin/sh .* sh -H "Authorization: \[REDACTED\]" --api-key '
                     r'"\[REDACTED\]" "OPENAI_API_KEY=\[REDACTED\]" "--token=\[REDACTED\]" '
                     r'--prompt "use \[REDACTED\] now" --model fake-gpt', text), text
    for out in (with_tls.stdout, with_tls.stderr, plain.stdout, plain.stderr, text):
        for secret in ARGV_SECRETS:
            assert secret not in out, f"{secret!r} leaked: {out[out.find(secret) - 200:][:400]}"


H2_CLIENT = r"""
import socket, ssl, sys
ca, port = sys.argv[1], int(sys.argv[2])
ctx = ssl.create_default_context(cafile=ca)
ctx.set_alpn_protocols(["h2", "http/1.1"])
raw = socket.create_connection(("127.0.0.1", port))
# (for a failed run's message: which of the server port's sockets was this client's)
print(f"  client: local port {raw.getsockname()[1]}", file=sys.stderr, flush=True)
with ctx.wrap_socket(raw, server_hostname="127.0.0.1") as s:
    # the connection preface's first line; then its end, an empty SETTINGS frame and a HEADERS
    # frame of HPACK bytes. The HTTP/1.1 server answers 505 once it has the preface's blank line
    # (in the second write, so both writes are in before it closes), maybe with a reset.
    s.sendall(b"PRI * HTTP/2.0\r\n")
    s.sendall(b"\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"
              + b"\x00\x00\x05\x01\x05\x00\x00\x00\x01\x82\x86\x84\x41\x8a")
    try:
        while s.recv(4096):
            pass
    except OSError:
        pass
"""


def test_http2_connection_said_not_parsed(model, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """A connection that starts with the HTTP/2 preface: its TLS records say "HTTP/2: headers
    not parsed" (JSON: "http2": true) instead of HTTP/1 lines parsed from binary frames."""
    client = tmp_path / "h2.py"
    client.write_text(H2_CLIENT)
    out = tmp_path / "trace.jsonl"
    argv = [sys.executable, str(client), str(model.ca), str(model.server_address[1])]
    proc = swatch("run", "--tls", "--json", "-o", str(out), "--", *argv)
    assert proc.returncode == 0, model.side(proc.stderr)
    events = read_events(out)
    writes = [e for e in events if e["type"] == "tls" and e["op"] == "write"]
    assert [e["bytes"] for e in writes] == [16, 31]
    assert all(e.get("http2") is True and e["note"] == "HTTP/2: headers not parsed"
               for e in writes)
    assert [e for e in events if e["type"] in ("http", "llm")] == []
    human = swatch("run", "--tls", "--", *argv)
    assert human.returncode == 0, model.side(human.stderr)
    assert "WRITE 16 bytes" in human.stderr and "HTTP/2: headers not parsed" in human.stderr
    assert not re.search(r" (HTTP|LLM) {3,}", human.stderr) and "PRI" not in human.stderr


def test_a_library_without_the_symbols_is_refused_and_nothing_stays_loaded() -> None:
    libz = next(p for p in ("/lib/x86_64-linux-gnu/libz.so.1", "/usr/lib/x86_64-linux-gnu/libz.so.1",
                            "/lib/aarch64-linux-gnu/libz.so.1") if os.path.exists(p))
    proc = swatch("run", "--tls", "--tls-lib", libz, "--", "/bin/true")
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [
        f"swatch: error: --tls-lib {libz}: not a TLS library swatch knows (no "
        "SSL_write/SSL_read or gnutls_record_send/recv)"], proc.stderr
    assert not tls_prog_names()  # (the autouse fixture checks the tracer's programs)


FAKE_LIBSSL = r"""
int SSL_write(void *s, const void *b, int n) { (void)s; (void)b; return n; }
int SSL_read(void *s, void *b, int n) { (void)s; (void)b; (void)n; return 0; }
int SSL_write_ex(void *s, const void *b, unsigned long n, unsigned long *w) { (void)s; (void)b; *w = n; return 1; }
int SSL_read_ex(void *s, void *b, unsigned long n, unsigned long *r) { (void)s; (void)b; (void)n; *r = 0; return 1; }
"""


def fake_libssl(directory: Path, bad: set[str]) -> Path:
    """A libssl.so.3 of our own (gcc, stripped: its symbols in .dynsym only) whose symbols in
    ``bad`` point 1 GiB past the start of their section, far beyond the end of the file: libbpf
    finds each symbol and turns it into a file offset, and the kernel refuses a uprobe at an
    offset past the end of the file (uprobe_register: EINVAL). A real refusal, with a real
    file: no mock."""
    src, lib_ = directory / "fake_ssl.c", directory / "libssl.so.3"
    src.write_text(FAKE_LIBSSL)
    subprocess.run(["gcc", "-shared", "-fPIC", "-s", "-o", str(lib_), str(src)], check=True)
    data = bytearray(lib_.read_bytes())
    shoff, = struct.unpack_from("<Q", data, 0x28)
    shentsize, shnum = struct.unpack_from("<HH", data, 0x3A)
    sections = [struct.unpack_from("<IIQQQQIIQQ", data, shoff + i * shentsize)
                for i in range(shnum)]
    patched = set()
    for _name, sh_type, _f, _a, offset, size, link, _i, _al, entsize in sections:
        if sh_type != 11:  # SHT_DYNSYM
            continue
        strtab = sections[link][4]
        for at in range(offset, offset + size, entsize):
            st_name, = struct.unpack_from("<I", data, at)
            name = bytes(data[strtab + st_name:data.index(0, strtab + st_name)]).decode()
            if name in bad:
                value, = struct.unpack_from("<Q", data, at + 8)
                struct.pack_into("<Q", data, at + 8, value + (1 << 30))
                patched.add(name)
    assert patched == bad
    lib_.write_bytes(bytes(data))
    return lib_


def test_a_uprobe_the_kernel_refuses_is_one_line_naming_the_library_and_why(  # type: ignore[no-untyped-def]
        tmp_path: Path) -> None:
    """One function of a probed library refused by the kernel: one line names the library, the
    function and the reason; the other functions are probed and the run goes on. Every one
    refused (--tls-lib): one error line, nothing left loaded."""
    lib_ = fake_libssl(tmp_path, {"SSL_read_ex"})
    proc = swatch("run", "--tls", "--tls-lib", str(lib_), "--", "/bin/sh", "-c", "exit 7")
    assert proc.returncode == 7, proc.stderr
    assert " EXEC " in proc.stderr  # traced as usual
    said = [line for line in proc.stderr.splitlines() if str(lib_) in line]
    assert len(said) == 2 and said[0] == \
        f"swatch: --tls: uprobes on {lib_} (SSL_write, SSL_write_ex, SSL_read)", proc.stderr
    refused = re.fullmatch(
        f"swatch: --tls: {re.escape(str(lib_))}: uprobe on SSL_read_ex refused: Invalid "
        f"argument \\(errno 22\\) — libbpf: prog 'sw_tls_enter': failed to create uprobe "
        f"'{re.escape(str(lib_))}:0x([0-9a-f]+)' perf event: Invalid argument", said[1])
    assert refused, said[1]
    assert int(refused[1], 16) > lib_.stat().st_size  # the offset the kernel would not take

    (tmp_path / "all").mkdir()
    every = fake_libssl(tmp_path / "all", {"SSL_write", "SSL_write_ex", "SSL_read",
                                           "SSL_read_ex"})
    proc = swatch("run", "--tls", "--tls-lib", str(every), "--", "/bin/true")
    assert proc.returncode == 1
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith(f"swatch: error: --tls-lib {every}: uprobe on SSL_write refused: "
                           "Invalid argument (errno 22) — libbpf: "), line
    assert not tls_prog_names()


def tls_prog_names() -> list[str]:
    out = subprocess.run(["bpftool", "prog", "list", "-j"], capture_output=True, text=True,
                         check=True).stdout
    return [p.get("name", "") for p in json.loads(out or "[]")
            if p.get("name", "").startswith("sw_tls_")]


@pytest.mark.parametrize("args, message", [
    (["--tls", "--tls-bytes", "0"], "--tls-bytes 0: give a number from 1 to 65536"),
    (["--tls", "--tls-bytes", "70000"], "--tls-bytes 70000: give a number from 1 to 65536"),
    (["--tls-bytes", "100"], "--tls-bytes and --tls-lib go with --tls"),
    (["--tls", "--tls-lib", "/nonexistent/libssl.so.3"], "--tls-lib /nonexistent/libssl.so.3: "
     "no such file"),
])
def test_bad_tls_options(args: list[str], message: str) -> None:
    proc = swatch("run", *args, "--", "/bin/true")
    assert proc.returncode != 0
    assert proc.stderr.strip().splitlines() == [f"swatch: error: {message}"], proc.stderr


BULK = r"""
import http.client, ssl, sys
ctx = ssl.create_default_context(cafile=sys.argv[1])
c = http.client.HTTPSConnection("127.0.0.1", int(sys.argv[2]), context=ctx)
body = b'{"model": "m", "messages": [], "pad": "' + b"x" * (8 << 20) + b'"}'
c.putrequest("POST", "/v1/chat/completions")
c.putheader("Content-Type", "application/json")
c.putheader("Content-Length", str(len(body)))
c.endheaders()
for i in range(0, len(body), 8192):  # one SSL_write_ex of 8 KiB each
    c.send(body[i:i + 8192])
print(c.getresponse().status)
"""


def test_ring_full_drops_counted_per_type(model, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """8 MiB of plaintext in 8 KiB writes (two records each) into a 64 KiB TLS ring: drops, counted per
    operation, in the stream (`lost` records) and in the summary; the cut body is counted."""
    script = tmp_path / "bulk.py"
    script.write_text(BULK)
    out = tmp_path / "t.jsonl"
    proc = swatch("run", "--tls", "--tls-bytes", "65536", "--ring-size", "65536", "--json",
                  "-o", str(out), "--", sys.executable, str(script), str(model.ca),
                  str(model.server_address[1]))
    assert proc.returncode == 0, model.side(proc.stderr)
    recs = read_events(out)
    lost = [r for r in recs if r["type"] == "lost" and r["ring"].startswith("tls_")]
    assert lost and {r["ring"] for r in lost} <= {"tls_write", "tls_read"}
    total = max(r["total_dropped"] for r in lost if r["ring"] == "tls_write")
    assert sum(r["dropped"] for r in lost if r["ring"] == "tls_write") == total
    assert f"swatch: TLS: {total} records dropped (ring full): write {total}, read 0" \
        in proc.stderr or "records dropped (ring full): write " in proc.stderr
    http = [r for r in recs if r["type"] == "http" and r["direction"] == "request"]
    assert not http or http[0]["body_cut"] > 0 or not http[0]["complete"]


GATED = r"""
import json, ssl, sys, urllib.request
ctx = ssl.create_default_context(cafile=sys.argv[1])   # libssl is mapped before swatch loads
print("ready", flush=True)
sys.stdin.readline()
body = json.dumps({"model": "fake-gpt", "messages": [{"role": "user", "content": "hi"}],
                   "tools": [{"type": "function", "function": {"name": "run_shell"}}]})
req = urllib.request.Request(sys.argv[2], data=body.encode(), headers={
    "Authorization": "Bearer sk-swatchtest0123456789abcdef", "Content-Type": "application/json"})
with urllib.request.urlopen(req, context=ctx) as resp:
    resp.read()  # the body too: an answer never read is never seen
    print(resp.status, flush=True)
sys.stdin.readline()
"""


def test_watch_tls_on_a_loaded_tracer(model, tmp_path: Path, pin_dir: Path) -> None:  # type: ignore[no-untyped-def]
    """`load --pid` a process that already mapped libssl, then `watch --tls`: its request and
    the model's tool calls are seen; the probes go when the watch ends."""
    script = tmp_path / "gated.py"
    script.write_text(GATED)
    target = subprocess.Popen([sys.executable, str(script), str(model.ca),
                               model.url + "/v1/chat/completions"], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    out = tmp_path / "w.jsonl"
    watch = None
    try:
        assert target.stdout.readline() == "ready\n"  # type: ignore[union-attr]
        swatch("load", "--pid", str(target.pid), "--pin-dir", str(pin_dir), check=True)
        watch = subprocess.Popen([SWATCH, "watch", "--tls", "--json", "-o", str(out),
                                  "--pin-dir", str(pin_dir)], stderr=subprocess.PIPE, text=True)
        first = watch.stderr.readline()  # type: ignore[union-attr]
        assert first.startswith("swatch: --tls: uprobes on ") and "libssl.so" in first, first
        # that notice is out once the stream is open: the kernel emits from then on
        target.stdin.write("go\n")  # type: ignore[union-attr]
        target.stdin.flush()  # type: ignore[union-attr]
        assert target.stdout.readline() == "200\n"  # type: ignore[union-attr]
        seen = wait_for(lambda: '"kind":"response"' in out.read_text(), timeout=20)
        watch.send_signal(signal.SIGTERM)
        _, err = watch.communicate(timeout=30)
        assert seen, (err, out.read_text()[-3000:])
        assert watch.returncode == 0, err
    finally:
        if watch is not None and watch.poll() is None:
            watch.kill()
            watch.wait()
        target.stdin.close()  # type: ignore[union-attr]
        target.wait(timeout=30)
    recs = read_events(out)
    llm = [r for r in recs if r["type"] == "llm"]
    assert [r["kind"] for r in llm] == ["request", "response"]
    assert llm[0]["tools"] == ["run_shell"] and llm[1]["tool_calls"] == expected_calls()
    assert all(r["pid"] == target.pid for r in recs if r["type"] in ("tls", "http", "llm"))
    assert "swatch: TLS: " in err and "1 LLM responses" in err
    assert not tls_prog_names(), "the TLS probes left with the watch"
    no_secret(out.read_text(), err)


@pytest.mark.skipif(shutil.which("wget") is None, reason="wget is in APT_TEST: make deps")
def test_wget_gnutls_openai_plain(model, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Debian's wget is a GnuTLS client: gnutls_record_send/recv."""
    body = json.dumps({"model": "fake-gpt", "messages": [{"role": "user", "content": "hi"}],
                       "tools": [{"type": "function", "function": {"name": "read_file"}}]})
    (tmp_path / "body.json").write_text(body)
    rc = tmp_path / "wgetrc"  # the secret in a file, not in argv
    rc.write_text("header = Authorization: Bearer sk-swatchtest0123456789abcdef\n"
                  "header = Content-Type: application/json\n")
    out = tmp_path / "trace.jsonl"
    proc = swatch("run", "--tls", "--json", "-o", str(out), "--", "wget", "-q", "-O", "-",
                  f"--ca-certificate={model.ca}", f"--post-file={tmp_path / 'body.json'}",
                  model.url + "/v1/chat/completions", env={"WGETRC": str(rc)})
    assert proc.returncode == 0, model.side(proc.stderr)
    assert model.received[-1][1]["Authorization"].endswith("sk-swatchtest0123456789abcdef")
    assert model.received[-1][2].decode() == body
    recs = read_events(out)
    tls = [r for r in recs if r["type"] == "tls"]
    assert tls and all(r["lib"] == "gnutls" and r["comm"] == "wget" for r in tls)
    assert body in "".join(r["data"] for r in tls if r["op"] == "write")
    assert all(r["peer"] == {"proto": "TCP", "addr": "127.0.0.1",
                             "port": model.server_address[1]} for r in tls)
    llm = [r for r in recs if r["type"] == "llm"]
    assert [r["kind"] for r in llm] == ["request", "response"]
    assert llm[0]["tools"] == ["read_file"] and llm[1]["tool_calls"] == expected_calls()
    no_secret(out.read_text(), proc.stdout, proc.stderr)
