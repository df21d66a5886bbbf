"""A fake chat-completions model over HTTPS on 127.0.0.1, for the --tls tests: a test CA and
server certificate made here (cryptography), and a server that answers OpenAI
``/v1/chat/completions`` and Anthropic ``/v1/messages`` requests with tool calls — as one JSON
body (Content-Length) or streamed as server-sent events (chunked). It keeps what it received,
so a test can check the client really sent its secret."""

from __future__ import annotations

import datetime
import ipaddress
import json
import os
import socket
import ssl
import threading
import time
import traceback
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

# What the fake model asks for: (name, arguments)
TOOL_CALLS = [("run_shell", {"cmd": "ls /tmp", "timeout": 5}),
              ("read_file", {"path": "/etc/hostname"})]


def make_certs(directory: Path) -> tuple[Path, Path, Path]:
    """(CA certificate, server certificate, server key) PEM files for 127.0.0.1."""
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "swatch test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - datetime.timedelta(minutes=5))
          .not_valid_after(now + datetime.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                       content_commitment=False, key_encipherment=False,
                                       data_encipherment=False, key_agreement=False,
                                       encipher_only=False, decipher_only=False), critical=True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()),
                         critical=False)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
            .issuer_name(ca_name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]),
                critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]),
                           critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    paths = directory / "ca.pem", directory / "server.pem", directory / "server.key"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return paths


def openai_body(stream: bool, tool_calls: list[tuple[str, Any]] | None = None
                ) -> list[dict[str, Any]] | dict[str, Any]:
    """The answer: ``tool_calls`` (default TOOL_CALLS); none: a text answer ("done")."""
    tool_calls = TOOL_CALLS if tool_calls is None else tool_calls
    calls = [{"id": f"call_{i}", "type": "function",
              "function": {"name": n, "arguments": json.dumps(a)}}
             for i, (n, a) in enumerate(tool_calls)]
    finish = "tool_calls" if calls else "stop"
    if not stream:
        return {"id": "chatcmpl-1", "object": "chat.completion", "model": "fake-gpt",
                "choices": [{"index": 0, "finish_reason": finish,
                             "message": {"role": "assistant",
                                         "content": None if calls else "done",
                                         **({"tool_calls": calls} if calls else {})}}],
                "usage": {"prompt_tokens": 42, "completion_tokens": 17, "total_tokens": 59}}
    chunks: list[dict[str, Any]] = [{"model": "fake-gpt", "choices": [
        {"index": 0, "delta": {"role": "assistant", "content": None}}]}]
    for i, c in enumerate(calls):
        args = c["function"]["arguments"]
        half = len(args) // 2
        chunks.append({"model": "fake-gpt", "choices": [{"index": 0, "delta": {"tool_calls": [
            {"index": i, "id": c["id"], "type": "function",
             "function": {"name": c["function"]["name"], "arguments": args[:half]}}]}}]})
        chunks.append({"model": "fake-gpt", "choices": [{"index": 0, "delta": {"tool_calls": [
            {"index": i, "function": {"arguments": args[half:]}}]}}]})
    chunks.append({"model": "fake-gpt", "choices": [{"index": 0, "delta": {},
                                                     "finish_reason": finish}]})
    chunks.append({"model": "fake-gpt", "choices": [],
                   "usage": {"prompt_tokens": 42, "completion_tokens": 17}})
    return chunks


def anthropic_body(stream: bool) -> list[tuple[str, dict[str, Any]]] | dict[str, Any]:
    if not stream:
        return {"id": "msg_1", "type": "message", "role": "assistant", "model": "fake-claude",
                "content": [{"type": "text", "text": "Let me look."}] + [
                    {"type": "tool_use", "id": f"toolu_{i}", "name": n, "input": a}
                    for i, (n, a) in enumerate(TOOL_CALLS)],
                "stop_reason": "tool_use", "usage": {"input_tokens": 30, "output_tokens": 12}}
    evs: list[tuple[str, dict[str, Any]]] = [
        ("message_start", {"type": "message_start", "message": {
            "id": "msg_1", "model": "fake-claude", "usage": {"input_tokens": 30,
                                                             "output_tokens": 1}}})]
    for i, (n, a) in enumerate(TOOL_CALLS):
        text = json.dumps(a)
        evs += [("content_block_start", {"type": "content_block_start", "index": i,
                                         "content_block": {"type": "tool_use", "id": f"t{i}",
                                                           "name": n, "input": {}}}),
                ("content_block_delta", {"type": "content_block_delta", "index": i,
                                         "delta": {"type": "input_json_delta",
                                                   "partial_json": text[:5]}}),
                ("content_block_delta", {"type": "content_block_delta", "index": i,
                                         "delta": {"type": "input_json_delta",
                                                   "partial_json": text[5:]}}),
                ("content_block_stop", {"type": "content_block_stop", "index": i})]
    evs += [("message_delta", {"type": "message_delta", "delta": {"stop_reason": "tool_use"},
                               "usage": {"output_tokens": 12}}),
            ("message_stop", {"type": "message_stop"})]
    return evs


TCP_STATES = {1: "ESTABLISHED", 2: "SYN_SENT", 3: "SYN_RECV", 4: "FIN_WAIT1", 5: "FIN_WAIT2",
              6: "TIME_WAIT", 7: "CLOSE", 8: "CLOSE_WAIT", 9: "LAST_ACK", 10: "LISTEN",
              11: "CLOSING", 12: "NEW_SYN_RECV"}


def tcp_sockets_on(port: int) -> list[str]:
    """Every IPv4 TCP socket with `port` at either end (/proc/net/tcp): its addresses, state,
    queues (a LISTEN socket's rx is its accept queue) and the processes holding it (none: a
    TIME_WAIT, or a connection still in an accept queue)."""
    owners: dict[str, list[str]] = {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
            comm = Path(f"/proc/{pid}/comm").read_text().strip()
        except OSError:
            continue
        for fd in fds:
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if target.startswith("socket:["):
                owners.setdefault(target[8:-1], []).append(f"{pid} ({comm}) fd {fd}")

    def addr(hexed: str) -> tuple[str, int]:
        ip, p = hexed.split(":")
        return str(ipaddress.IPv4Address(int(ip, 16).to_bytes(4, "little"))), int(p, 16)

    out = []
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        f = line.split()
        (lip, lport), (rip, rport) = addr(f[1]), addr(f[2])
        if port not in (lport, rport):
            continue
        tx, rx = (int(x, 16) for x in f[4].split(":"))
        state = TCP_STATES.get(int(f[3], 16), f[3])
        out.append(f"  {lip}:{lport} -> {rip}:{rport} {state} tx {tx} rx {rx} inode {f[9]}: "
                   + (", ".join(owners.get(f[9], [])) or "no process"))
    return out or ["  none"]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: FakeModelServer

    def log_message(self, *args: object) -> None:
        pass

    def handle(self) -> None:
        # The handshake stays where it was (inside the first SSL_read_ex, which --tls probes in
        # every process, this one too); what the connection came to is told afterwards.
        super().handle()
        version = self.connection.version()  # None: the handshake never completed
        self.server.note(f"client port {self.client_address[1]}: ended; handshake "
                         f"{'done, ' + version if version else 'NOT done'}; last request "
                         f"{getattr(self, 'requestline', '')!r}")

    def do_POST(self) -> None:  # noqa: N802 (http.server's name)
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.server.received.append((self.path, dict(self.headers), body))
        req = json.loads(body or b"{}")
        stream = bool(req.get("stream"))
        anthropic = self.path.endswith("/messages")
        calls = None
        if self.server.script is not None:  # a conversation: turn N answers script[N]
            turn = sum(1 for m in req.get("messages", []) if m.get("role") == "assistant")
            calls = self.server.script[turn] if turn < len(self.server.script) else []
        if not stream:
            data = json.dumps(anthropic_body(False) if anthropic
                              else openai_body(False, calls)).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Set-Cookie", "session=cookie-secret-value")
            self.end_headers()
            self.wfile.write(data)
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        if anthropic:
            events = [f"event: {n}\ndata: {json.dumps(d)}\n\n"
                      for n, d in anthropic_body(True)]  # type: ignore[misc]
        else:
            events = [f"data: {json.dumps(d)}\n\n"
                      for d in openai_body(True, calls)]  # type: ignore
            events.append("data: [DONE]\n\n")
        for ev in events:
            raw = ev.encode()
            self.wfile.write(f"{len(raw):x}\r\n".encode() + raw + b"\r\n")
            self.wfile.flush()
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()


class FakeModelServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, cert: Path, key: Path) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.received: list[tuple[str, dict[str, str], bytes]] = []
        # OpenAI answers by turn (assistant messages so far): script[turn]'s tool calls, and a
        # text answer past its end; None: TOOL_CALLS every time
        self.script: list[list[tuple[str, Any]]] | None = None
        # What went wrong on the server's side of a connection (a failed handshake, a
        # handler's exception), for the assertion message of a test whose client failed.
        self.errors: list[str] = []
        # Every connection's story (accepted, handshake, served), with times: what a failed
        # client's assertion message shows of the server's side.
        self.story: list[str] = []
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(str(cert), str(key))
        self.thread = threading.Thread(target=self.serve_forever, daemon=True)

    def get_request(self) -> tuple[socket.socket, Any]:
        # The TLS handshake happens in the connection's own thread (on its first read), not
        # in accept() on the server's loop, where one client's handshake would hold up all.
        # socketserver drops a connection whose get_request raised OSError without a word
        # (SSLError is one): say it, for the assertion message of the client's test.
        try:
            sock, addr = self.socket.accept()
            self.note(f"client port {addr[1]}: accepted (fd {sock.fileno()})")
            return self.ctx.wrap_socket(sock, server_side=True,
                                        do_handshake_on_connect=False), addr
        except OSError:
            self.errors.append("accept/wrap_socket: " + traceback.format_exc())
            raise

    def note(self, what: str) -> None:
        t = time.time()
        self.story.append(f"{time.strftime('%H:%M:%S', time.localtime(t))}."
                          f"{int(t * 1000) % 1000:03d} {what}")

    def handle_error(self, request: object, client_address: object) -> None:
        self.errors.append(traceback.format_exc())
        self.note(f"client {client_address}: error: {traceback.format_exc(limit=0).strip()}")

    def side(self, proc_stderr: str) -> str:
        """For a failed client's assertion message: the client's own lines (not the tracer's
        timestamped event lines), then the server's story and errors, then every TCP socket
        on the server's port as the kernel has them now (who else holds one)."""
        own = [ln for ln in proc_stderr.splitlines()
               if ln.startswith(("Traceback", "  ")) or " CONNECT " in ln
               or "Error" in ln and not ln[:2].isdigit()]
        return ("client:\n" + "\n".join(own[-40:]) + "\nserver story:\n"
                + "\n".join(self.story[-12:]) + "\nserver errors:\n" + "\n".join(self.errors)
                + f"\nthis process: {len(os.listdir('/proc/self/fd'))} fds open, threads "
                + ", ".join(t.name for t in threading.enumerate())
                + f"\nTCP sockets on port {self.server_address[1]} now:\n"
                + "\n".join(tcp_sockets_on(self.server_address[1])))

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.server_address[1]}"

    def __enter__(self) -> FakeModelServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()
        self.server_close()
