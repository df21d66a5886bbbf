"""The TLS ring as lines merged into a trace (a Streamer ``extra`` line source): each call's
plaintext (TLS), the HTTP/1.1 messages reassembled per connection (HTTP) and the
chat-completions exchanges in them (LLM), human or JSON — every byte through redact first."""

from __future__ import annotations

import ipaddress
import json
import socket
import struct
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TextIO

from syscall_watcher.kernel.libbpf import ffi, lib, step_of
from syscall_watcher.tls.http import HttpMessage, HttpStream
from syscall_watcher.tls.llm import llm_request, llm_response, render_call
from syscall_watcher.tls.probes import TlsProbes
from syscall_watcher.tls.redact import redact_bytes, redact_headers, redact_text
from syscall_watcher.tls.steps import Steps
from syscall_watcher.trace.output import tell

# struct sw_event_hdr + struct sw_tls_event up to data[] (bpf/tls.h; checked against cffi)
_HDR = "<HHIQIIIIQ16s"
_TLS = _HDR + "QQIIIHBBiHHHBB16s"
_TLS_SIZE = struct.calcsize(_TLS)
assert _TLS_SIZE == ffi.offsetof("struct sw_tls_event", "data"), "bpf/tls.h changed"
MAX_CONNS = 256          # connections followed at once (the least recent is forgotten)
PREVIEW = 96             # plaintext bytes on a human TLS line (-s N changes it)
FD_FROM = {lib.SW_TLS_FD_NONE: None, lib.SW_TLS_FD_CALL: "syscall",
           lib.SW_TLS_FD_CONN: "connection"}
_C = {"TLS": "\033[36m", "HTTP": "\033[34m", "LLM": "\033[1;35m", "STEP": "\033[1;33m"}


@dataclass
class Call:
    """One TLS call's plaintext, put together from its chunks."""
    hdr: tuple[Any, ...]
    conn: int
    op: int
    cookie: int
    length: int
    captured: int
    sock: tuple[Any, ...]
    data: bytearray = field(default_factory=bytearray)
    got: int = 0

    @property
    def ktime(self) -> int:
        return int(self.hdr[3])


# An HTTP/2 connection starts with this (RFC 9113 3.4); its frames are binary, its headers
# HPACK: not parsed, and said so.
H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
H2_NOTE = "HTTP/2: headers not parsed"


@dataclass
class Conn:
    requests: HttpStream
    responses: HttpStream
    asked: deque[str | None] = field(default_factory=deque)  # api of each request, in order
    last: Call | None = None
    started: bool = False   # its first bytes were seen (the HTTP/2 preface is looked for there)
    http2: bool = False     # it began with the HTTP/2 connection preface: not parsed as HTTP/1


def peer_of(sock: tuple[Any, ...]) -> dict[str, Any] | None:
    fd, family, port, sock_type, _, _, addr = sock
    if family == socket.AF_INET:
        ip = str(ipaddress.IPv4Address(addr[:4]))
    elif family == socket.AF_INET6:
        ip = str(ipaddress.IPv6Address(addr))
    elif family == socket.AF_UNIX:
        return {"proto": "UNIX"}
    else:
        return None
    proto = "TCP" if sock_type == socket.SOCK_STREAM else "UDP"
    return {"proto": proto, "addr": ip, "port": port}


def peer_text(peer: dict[str, Any] | None) -> str:
    if peer is None:
        return ""
    if "addr" not in peer:
        return f" ({peer['proto']})"
    addr = f"[{peer['addr']}]" if ":" in peer["addr"] else peer["addr"]
    return f" ({peer['proto']} {addr}:{peer['port']})"


def escape(data: bytes) -> str:
    out = []
    for b in data:
        if b == 10:
            out.append("\\n")
        elif b == 13:
            out.append("\\r")
        elif b == 9:
            out.append("\\t")
        elif b == 34 or b == 92:
            out.append("\\" + chr(b))
        elif 32 <= b < 127:
            out.append(chr(b))
        else:
            out.append(f"\\x{b:02x}")
    return "".join(out)


class TlsLines:
    """``take()``: the lines of what the TLS ring holds now, as (ktime, line) pairs."""

    def __init__(self, probes: TlsProbes, pids: Callable[[], set[int]], json_lines: bool = False,
                 color: bool = False, notices: TextIO | None = None, preview: int = PREVIEW,
                 body_max: int = 1 << 20, clock_offset_ns: int = 0,
                 steps: Steps | None = None) -> None:
        self.probes = probes
        self.steps = steps  # --agent
        self.pids = pids
        self.json = json_lines
        self.color = color
        self.notices = notices
        self.preview = preview
        self.body_max = body_max
        self.offset = clock_offset_ns
        self.utc = time.localtime().tm_gmtoff
        self.ring = probes.ring()
        self.partial: dict[tuple[int, int], Call] = {}
        self.conns: OrderedDict[tuple[int, int], Conn] = OrderedDict()
        self.counts = {"tls": 0, "http": 0, "llm_request": 0, "llm_response": 0,
                       "conns_forgotten": 0, "calls_incomplete": 0, "body_cut": 0}
        self._drops_seen = {"write": 0, "read": 0}
        self._announced = False

    def announce(self) -> None:
        """Say what is probed (once): call when the stream is open (the kernel emits)."""
        if not self._announced:
            self._announced = True
            for note in self.probes.describe():
                tell(self.notices, f"swatch: --tls: {note}\n")

    # -- the source protocol -------------------------------------------------------------
    def take(self, timeout_ms: int = 0) -> list[tuple[int, bytes]]:
        self.announce()
        self.probes.scan(self.pids())
        for note in self.probes.take_notes():
            tell(self.notices, f"swatch: --tls: {note}\n")
        if self.steps is not None:
            self.steps.drain()  # what step processes did, formatted since the last take
        out: list[tuple[int, bytes]] = []
        while self.ring.drain() > 0:
            out += self._records(self.ring.batch())
        out += self._drops()
        return out

    def take_all(self) -> list[tuple[int, bytes]]:
        out = self.take()
        for call in list(self.partial.values()):
            out += self._call(call)
        self.partial.clear()
        for key, conn in list(self.conns.items()):
            for msg in conn.requests.flush() + conn.responses.flush():
                if conn.last is not None:
                    out += self._message(key, conn, conn.last, msg)
        return out

    def close(self) -> None:
        self.ring.close()

    # -- records -> calls ----------------------------------------------------------------
    def _records(self, batch: bytes) -> list[tuple[int, bytes]]:
        out: list[tuple[int, bytes]] = []
        pos = 0
        while pos + _TLS_SIZE <= len(batch):
            rec = struct.unpack_from(_TLS, batch, pos)
            size = rec[1]
            if rec[0] != lib.SW_EV_TLS or size < _TLS_SIZE:
                break
            hdr = rec[:10]
            (conn, call_no, length, captured, offset, data_len, op, cookie,
             *sock) = rec[10:]
            data = batch[pos + _TLS_SIZE: pos + _TLS_SIZE + data_len]
            pos += (size + 7) & ~7
            key = (hdr[2], call_no)  # (cpu, the CPU's call number)
            call = self.partial.get(key)
            if call is None:
                call = self.partial[key] = Call(hdr, conn, op, cookie, length, captured,
                                                tuple(sock))
            if offset == len(call.data):
                call.data += data
            call.got += data_len
            if call.got >= call.captured:
                del self.partial[key]
                out += self._call(call)
        return out

    def _call(self, call: Call) -> list[tuple[int, bytes]]:
        if call.got < call.captured:
            self.counts["calls_incomplete"] += 1
        self.counts["tls"] += 1
        pid = call.hdr[4]
        key = (pid, call.conn)
        conn = self.conns.get(key)
        if conn is None:
            conn = self.conns[key] = Conn(HttpStream("request", self.body_max),
                                          HttpStream("response", self.body_max))
            if len(self.conns) > MAX_CONNS:
                self.conns.popitem(last=False)
                self.counts["conns_forgotten"] += 1
        self.conns.move_to_end(key)
        conn.last = call
        data = bytes(call.data)
        if not conn.started and data:
            conn.started = True
            conn.http2 = data.startswith(H2_PREFACE[:16])  # "PRI * HTTP/2.0\r\n"
        out = [(call.ktime, self._tls_line(call, redact_bytes(data), conn.http2))]
        if conn.http2:
            return out
        # A chunk lost between the ones we have is a hole of unknown place: treat the rest of
        # the call as cut.
        total = call.length if len(data) == call.got else len(data) + (call.length - call.got)
        stream = conn.responses if call.op == lib.SW_TLS_READ else conn.requests
        for msg in stream.feed(data, max(total, len(data))):
            out += self._message(key, conn, call, msg)
        return out

    def _message(self, key: tuple[int, int], conn: Conn, call: Call,
                 msg: HttpMessage) -> list[tuple[int, bytes]]:
        self.counts["http"] += 1
        self.counts["body_cut"] += msg.body_cut
        out = [(call.ktime, self._http_line(call, msg))]
        if msg.kind == "request":
            req = llm_request(msg)
            conn.asked.append(req["api"] if req else None)
            if req is not None:
                self.counts["llm_request"] += 1
                line = self._llm_line(call, "request", req, msg)
                if self.steps is not None:  # the agent's next request closes its step
                    steps, pid, when = self.steps, call.hdr[4], call.ktime + self.offset
                    out.append((call.ktime, line, lambda: steps.closed(pid, when)))
                else:
                    out.append((call.ktime, line))
        elif msg.status >= 200:
            api = conn.asked.popleft() if conn.asked else None
            if api is not None:
                resp = llm_response(msg, api)
                if resp is not None:
                    self.counts["llm_response"] += 1
                    resp["status"] = msg.status
                    line = self._llm_line(call, "response", resp, msg)
                    if self.steps is not None and resp["tool_calls"]:
                        out.append((call.ktime, line, self._step_start(call, resp)))
                    else:
                        out.append((call.ktime, line))
        return out

    def _step_start(self, call: Call, resp: dict[str, Any]) -> Callable[[], bytes]:
        """What opens a step when the LLM RESPONSE line is written (in time order)."""
        steps = self.steps
        assert steps is not None
        comm = call.hdr[9].split(b"\0", 1)[0].decode(errors="replace")
        prefix = self._prefix(call, "STEP")
        return lambda: steps.started(call.hdr[4], comm, call.ktime + self.offset,
                                     resp["tool_calls"], prefix)

    def _drops(self) -> list[tuple[int, bytes]]:
        counters = self.probes.counters.read()
        out = []
        for op in ("write", "read"):
            total = counters[op]["dropped"]
            new = total - self._drops_seen[op]
            if new <= 0:
                continue
            self._drops_seen[op] = total
            if self.json:
                out.append((time.monotonic_ns(), (json.dumps(
                    {"type": "lost", "time_ns": time.time_ns(), "ring": f"tls_{op}",
                     "dropped": new, "total_dropped": total}, separators=(",", ":")) +
                    "\n").encode()))
            tell(self.notices, f"swatch: {new} TLS {op} records dropped (ring buffer full); "
                               f"{total} since load\n")
        return out

    # -- lines -----------------------------------------------------------------------------
    def _common(self, call: Call, type_: str) -> dict[str, Any]:
        _, _, _, ktime, pid, tid, ppid, uid, cgroup_id, comm = call.hdr
        rec = {"type": type_, "time_ns": ktime + self.offset, "pid": pid, "tid": tid,
               "ppid": ppid, "uid": uid, "cgroup_id": cgroup_id,
               "comm": comm.split(b"\0", 1)[0].decode(errors="replace")}
        if self.steps is not None and (step := step_of(pid)):
            rec["step"] = step
        return rec

    def _conn_fields(self, call: Call) -> dict[str, Any]:
        fd = call.sock[0]
        return {"fd": fd if fd >= 0 else None, "fd_from": FD_FROM.get(call.sock[4]),
                "peer": peer_of(call.sock) if fd >= 0 else None, "conn": f"{call.conn:#x}",
                "lib": "gnutls" if call.cookie & lib.SW_TLS_CK_GNUTLS else "openssl"}

    def _prefix(self, call: Call, verb: str) -> str:
        ns = call.ktime + self.offset + self.utc * 1_000_000_000
        secs = ns // 1_000_000_000
        s = secs % 86400
        ts = f"{s // 3600:02d}:{s // 60 % 60:02d}:{s % 60:02d}.{ns // 1_000_000 % 1000:03d}"
        comm = call.hdr[9].split(b"\0", 1)[0].decode(errors="replace")
        v = f"{_C[verb]}{verb:<7}\033[0m" if self.color else f"{verb:<7}"
        return f"{ts} {call.hdr[4]:<7} {comm:<15} {v} "

    def _where(self, call: Call) -> str:
        f = self._conn_fields(call)
        return (f"on fd {f['fd']}{peer_text(f['peer'])}" if f["fd"] is not None
                else "on fd ? (no socket call inside it)")

    def _emit(self, record: dict[str, Any], human: str) -> bytes:
        if self.json:
            return (json.dumps(record, separators=(",", ":"), ensure_ascii=False) +
                    "\n").encode()
        return (human + "\n").encode()

    def _tls_line(self, call: Call, data: bytes, http2: bool = False) -> bytes:
        op = "read" if call.op == lib.SW_TLS_READ else "write"
        rec = self._common(call, "tls") | {"op": op, "bytes": call.length,
                                           "captured": call.got,
                                           **self._conn_fields(call),
                                           "data": data.decode("utf-8", "replace")}
        shown = data[:self.preview]
        more = "..." if len(data) > self.preview or call.length > len(data) else ""
        cut = f" (first {call.got} captured)" if call.length > call.got else ""
        human = (self._prefix(call, "TLS") + f"{op.upper()} {call.length} bytes "
                 f"{self._where(call)}{cut} \"{escape(shown)}\"{more}")
        if http2:  # binary frames (HPACK headers): say so rather than show them as text
            rec |= {"http2": True, "note": H2_NOTE}
            human = (self._prefix(call, "TLS") + f"{op.upper()} {call.length} bytes "
                     f"{self._where(call)}{cut} {H2_NOTE}")
        return self._emit(rec, human)

    def _http_line(self, call: Call, msg: HttpMessage) -> bytes:
        headers = redact_headers(msg.headers)
        rec = self._common(call, "http") | {
            "direction": msg.kind, "version": msg.version,
            **({"method": msg.method, "target": redact_text(msg.target)}
               if msg.kind == "request" else {"status": msg.status, "reason": msg.reason}),
            "headers": [[k, v] for k, v in headers], "content_type": msg.content_type or None,
            "chunked": msg.chunked, "body_bytes": msg.body_bytes,
            "body_cut": msg.body_cut, "complete": msg.complete, **self._conn_fields(call)}
        if msg.kind == "request":
            first = f"> {msg.method} {redact_text(msg.target)} HTTP/{msg.version}"
        else:
            first = f"< HTTP/{msg.version} {msg.status} {msg.reason}".rstrip()
        bits = [f"{len(headers)} headers"]
        if msg.content_type:
            bits.append(msg.content_type)
        body = f"body {msg.body_bytes} bytes" + (" chunked" if msg.chunked else "")
        if msg.body_cut:
            body += f", {msg.body_cut} not kept"
        if not msg.complete:
            body += ", incomplete"
        bits.append(body)
        host = msg.header("host")
        if host:
            bits.insert(0, f"host {redact_text(host)}")
        return self._emit(rec, self._prefix(call, "HTTP") + f"{first} ({', '.join(bits)}) "
                          f"{self._where(call)}")

    def _llm_line(self, call: Call, kind: str, fields: dict[str, Any],
                  msg: HttpMessage) -> bytes:
        rec = self._common(call, "llm") | {"kind": kind, **fields, **self._conn_fields(call)}
        if kind == "request":
            text = (f"REQUEST model={fields['model']} messages={fields['messages']} "
                    f"tools=[{', '.join(fields['tools'])}]" +
                    (" stream" if fields["stream"] else ""))
        else:
            tok = fields["tokens"]
            calls = ", ".join(render_call(c) for c in fields["tool_calls"])
            text = (f"RESPONSE tool_calls=[{calls}]"
                    f" tokens={tok['input'] if tok['input'] is not None else '?'}/"
                    f"{tok['output'] if tok['output'] is not None else '?'}"
                    f" finish={fields['finish_reason']}")
            if fields["text"]:
                text += f" text=\"{escape(fields['text'][:80].encode())}\""
            if fields["stream"]:
                text += " (streamed)"
        return self._emit(rec, self._prefix(call, "LLM") + text)

    def summary_lines(self) -> list[str]:
        """The end-of-run lines: calls, records, drops, cuts, what was not covered."""
        c = self.probes.counters.read()
        lines = [f"TLS: {c['write']['calls']} writes, {c['read']['calls']} reads seen; "
                 f"{self.counts['http']} HTTP messages, {self.counts['llm_request']} LLM "
                 f"requests, {self.counts['llm_response']} LLM responses"]
        drops = c["write"]["dropped"] + c["read"]["dropped"]
        if drops:
            lines.append(f"TLS: {drops} records dropped (ring full): write "
                         f"{c['write']['dropped']}, read {c['read']['dropped']}")
        cut = c["write"]["cut_bytes"] + c["read"]["cut_bytes"]
        if cut:
            lines.append(f"TLS: {cut} plaintext bytes beyond --tls-bytes "
                         f"{self.probes.capture_bytes} not captured")
        if self.counts["body_cut"]:
            lines.append(f"TLS: {self.counts['body_cut']} HTTP body bytes not kept")
        failed = c["write"]["read_failed"] + c["read"]["read_failed"]
        if failed:
            lines.append(f"TLS: {failed} chunks whose memory could not be read")
        if c["no_room"]["calls"]:
            lines.append(f"TLS: {c['no_room']['calls']} calls not followed (in-flight table "
                         "full)")
        if not self.probes.covered:
            lines.append("TLS: no traced process mapped libssl or libgnutls: no TLS plaintext "
                         "to see (the rest is traced as usual)")
        for pid, comm in sorted(self.probes.uncovered.items()):
            lines.append(f"TLS: NOT covered: pid {pid} ({comm}) used TCP with no "
                         "libssl/libgnutls mapped (statically linked TLS)")
        return lines


def traced_pids(session: Any) -> Callable[[], set[int]]:
    """Whom a pinned tracer traces, for the library scan: its pid set, or the processes in its
    cgroup tree; uid/comm/system-wide: every process the tracer has counted (pid_stats)."""
    from syscall_watcher.kernel.libbpf import to_str
    from syscall_watcher.trace.tracer import MODE_IDS

    meta = session.meta()
    if meta.mode == MODE_IDS["pid"]:
        return lambda: set(session.pids())
    if meta.mode == MODE_IDS["cgroup"]:
        root = to_str(meta.cgroup_path)

        def in_cgroup() -> set[int]:
            import os

            found: set[int] = set()
            for d, _, _ in os.walk(root):
                try:
                    with open(os.path.join(d, "cgroup.procs")) as f:
                        found.update(int(x) for x in f.read().split())
                except OSError:
                    continue
            return found
        return in_cgroup
    return lambda: {pid for pid in session.pid_stats() if _alive(pid)}


def _alive(pid: int) -> bool:
    import os

    return os.path.exists(f"/proc/{pid}")


def open_for_session(session: Any, tls: Any, *, json_lines: bool, color: bool,
                     notices: TextIO | None, view: Any,
                     steps: Steps | None = None) -> tuple[TlsProbes, TlsLines]:
    """`watch --tls`: the TLS probes loaded next to a pinned tracer (its membership maps and
    target, from its pins), living as long as this consumer."""
    from pathlib import Path

    from syscall_watcher.kernel.libbpf import to_str
    from syscall_watcher.targets.target import Target
    from syscall_watcher.trace.stream import clock_offset_ns
    from syscall_watcher.trace.tracer import MODE_NAMES

    meta = session.meta()
    mode = MODE_NAMES[meta.mode]
    level = 0
    cgroup_path = to_str(meta.cgroup_path)
    if mode == "cgroup" and cgroup_path:
        from syscall_watcher.targets.containers import cgroup_v2_root

        level = len(Path(cgroup_path).relative_to(cgroup_v2_root()).parts)
    target = Target(mode=mode, pid=meta.target_pid, uid=meta.target_uid,
                    comm=to_str(meta.target_comm), cgroup_id=meta.target_cgroup,
                    cgroup_level=level, follow_children=bool(meta.follow_children))
    probes = TlsProbes.load(session, target, capture_bytes=tls.capture_bytes,
                            ring_size=max(int(meta.ring_size) // 4, 1 << 16),
                            extra_libraries=tls.libraries)
    try:
        pids = traced_pids(session)
        probes.scan(pids(), force=True)
        lines = TlsLines(probes, pids, json_lines=json_lines, color=color, notices=notices,
                         preview=view.strsize if view is not None and view.strsize else PREVIEW,
                         clock_offset_ns=clock_offset_ns(), steps=steps)
    except BaseException:
        probes.close()
        raise
    return probes, lines
