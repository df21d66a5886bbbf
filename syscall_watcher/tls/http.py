"""HTTP/1.1 messages from one direction of a TLS connection's plaintext, as the uprobes saw
it: one call at a time, possibly cut (the capture is bounded: a call moved ``total`` bytes of
which ``data`` were copied). Heads are parsed, bodies reassembled (Content-Length, chunked,
or up to the end of the stream), decoded (gzip/deflate), and bounded: a body beyond
``body_max`` bytes is counted in ``body_cut``, not kept. After a gap inside framing (a cut
chunked body, a cut head) the stream resynchronises at the next call that starts a message.

Hand-written rather than h11: h11 is a two-sided state machine (a response parser must have
sent the request) that rejects a stream starting mid-message or with holes, which is what a
bounded capture gives."""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass, field

HEAD_MAX = 64 << 10
_REQUEST = re.compile(rb"^([A-Z]{3,10}) (\S+) HTTP/(1\.[01])\r?$")
_RESPONSE = re.compile(rb"^HTTP/(1\.[01]) (\d{3})(?: ([^\r\n]*))?\r?$")
_START = re.compile(rb"^(?:[A-Z]{3,10} [!-~]|HTTP/1\.[01] )")
_START_PREFIX = re.compile(rb"[A-Z]{1,10} ?|H(?:T(?:T(?:P(?:/(?:1(?:\.[01]?)?)?)?)?)?)?")


def starts_message(data: bytes) -> bool:
    """Could data be the start of an HTTP/1.x request or response (or a prefix of one)?"""
    return bool(_START.match(data)) or (len(data) < 12 and
                                        _START_PREFIX.fullmatch(data) is not None)


@dataclass
class HttpMessage:
    kind: str                      # "request" or "response"
    version: str
    method: str = ""
    target: str = ""
    status: int = 0
    reason: str = ""
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""              # what was kept (decoded when Content-Encoding allows)
    body_bytes: int = 0            # body bytes the connection carried (framing excluded)
    body_cut: int = 0              # of those, not kept (capture bound, body_max, gaps)
    complete: bool = False         # the body's end was seen
    chunked: bool = False
    head_cut: bool = False

    def header(self, name: str) -> str:
        name = name.lower()
        for k, v in self.headers:
            if k.lower() == name:
                return v
        return ""

    @property
    def content_type(self) -> str:
        return self.header("content-type").split(";")[0].strip().lower()


class HttpStream:
    """One direction (requests or responses) of one connection."""

    def __init__(self, kind: str, body_max: int = 1 << 20) -> None:
        self.kind = kind
        self.body_max = body_max
        self._buf = b""
        self._msg: HttpMessage | None = None
        self._mode = ""           # "", "length", "chunked", "close"
        self._left = 0            # length: body bytes still due; chunked: of this chunk
        self._chunk_state = "size"
        self._raw = bytearray()
        self._lost = False        # out of sync: wait for a call that starts a message
        self.resyncs = 0

    def feed(self, data: bytes, total: int) -> list[HttpMessage]:
        """One call's plaintext (``data``, the first bytes of the ``total`` it moved)."""
        gap = total - len(data)
        out: list[HttpMessage] = []
        if self._lost:
            if not starts_message(data):
                return out
            self._lost = False
            self.resyncs += 1
        if self._msg is None and not self._buf and not starts_message(data):
            # Not HTTP/1.1 (HTTP/2, a WebSocket frame, another protocol): nothing to parse.
            self._lost = True
            return out
        self._buf += data
        while self._buf or (self._msg is not None and self._mode == "length" and
                            self._left == 0):
            before = (len(self._buf), self._msg)
            if self._msg is None:
                msg = self._head()
                if msg is None:
                    if len(self._buf) > HEAD_MAX:
                        self._reset_lost()
                    break
                self._msg = msg
                if self._mode == "" or (self._mode == "length" and self._left == 0):
                    out.append(self._finish(complete=True))
                continue
            done = self._body()
            if done:
                out.append(self._finish(complete=True))
            if (len(self._buf), self._msg) == before:
                break
        if gap > 0:
            if self._msg is not None and self._mode in ("length", "close") and not self._buf:
                self._msg.body_bytes += gap
                self._msg.body_cut += gap
                if self._mode == "length":
                    self._left -= min(gap, self._left)
                    if self._left == 0:
                        out.append(self._finish(complete=True))
            else:  # a hole in a head or in chunk framing: the rest of the message is lost
                if self._msg is not None:
                    self._msg.body_cut += gap
                    out.append(self._finish(complete=False))
                self._reset_lost()
        return out

    def flush(self) -> list[HttpMessage]:
        """The message in progress, as far as it got (the connection went quiet or ended)."""
        if self._msg is None:
            return []
        return [self._finish(complete=self._mode == "close")]

    def _reset_lost(self) -> None:
        self._buf = b""
        self._msg = None
        self._mode = ""
        self._lost = True

    def _head(self) -> HttpMessage | None:
        end = self._buf.find(b"\r\n\r\n")
        sep = 4
        if end < 0:
            end = self._buf.find(b"\n\n")
            sep = 2
            if end < 0:
                return None
        head, self._buf = self._buf[:end], self._buf[end + sep:]
        lines = head.split(b"\n")
        first = lines[0].rstrip(b"\r")
        msg: HttpMessage
        if (m := _REQUEST.match(first)) is not None:
            msg = HttpMessage("request", m.group(3).decode(), method=m.group(1).decode(),
                              target=m.group(2).decode("latin-1"))
        elif (m := _RESPONSE.match(first)) is not None:
            msg = HttpMessage("response", m.group(1).decode(), status=int(m.group(2)),
                              reason=(m.group(3) or b"").decode("latin-1"))
        else:
            self._reset_lost()
            return None
        for line in lines[1:]:
            k, sep_, v = line.rstrip(b"\r").partition(b":")
            if sep_:
                msg.headers.append((k.decode("latin-1").strip(), v.decode("latin-1").strip()))
        te = msg.header("transfer-encoding").lower()
        length = msg.header("content-length")
        if "chunked" in te:
            self._mode, msg.chunked, self._chunk_state = "chunked", True, "size"
        elif length.isdigit():
            self._mode, self._left = "length", int(length)
        elif msg.kind == "response" and msg.status >= 200 and msg.status not in (204, 304):
            self._mode = "close"
        else:
            self._mode = ""
        self._raw = bytearray()
        return msg

    def _keep(self, data: bytes) -> None:
        assert self._msg is not None
        self._msg.body_bytes += len(data)
        room = self.body_max - len(self._raw)
        self._raw += data[:max(room, 0)]
        if len(data) > room:
            self._msg.body_cut += len(data) - max(room, 0)

    def _body(self) -> bool:
        """Take body bytes from the buffer; True when the message's body ended."""
        if self._mode == "length":
            take = self._buf[:self._left]
            self._buf = self._buf[len(take):]
            self._left -= len(take)
            self._keep(take)
            return self._left == 0
        if self._mode == "close":
            self._keep(self._buf)
            self._buf = b""
            return False
        while self._buf:  # chunked
            if self._chunk_state == "size":
                nl = self._buf.find(b"\n")
                if nl < 0:
                    return False
                size_text = self._buf[:nl].split(b";")[0].strip()
                self._buf = self._buf[nl + 1:]
                try:
                    self._left = int(size_text, 16)
                except ValueError:
                    self._reset_lost()
                    return False
                self._chunk_state = "data" if self._left else "trailer"
            elif self._chunk_state == "data":
                take = self._buf[:self._left]
                self._buf = self._buf[len(take):]
                self._left -= len(take)
                self._keep(take)
                if self._left == 0:
                    self._chunk_state = "crlf"
            elif self._chunk_state == "crlf":
                nl = self._buf.find(b"\n")
                if nl < 0:
                    return False
                self._buf = self._buf[nl + 1:]
                self._chunk_state = "size"
            else:  # trailer: up to an empty line
                nl = self._buf.find(b"\n")
                if nl < 0:
                    return False
                line, self._buf = self._buf[:nl], self._buf[nl + 1:]
                if not line.strip():
                    return True
        return False

    def _finish(self, complete: bool) -> HttpMessage:
        msg = self._msg
        assert msg is not None
        msg.complete = complete
        body = bytes(self._raw)
        enc = msg.header("content-encoding").lower()
        if body and enc in ("gzip", "deflate", "x-gzip"):
            try:
                d = zlib.decompressobj(wbits=47 if "gzip" in enc else 15)
                body = d.decompress(body, self.body_max)
            except zlib.error:
                pass
        msg.body = body
        self._msg = None
        self._mode = ""
        self._raw = bytearray()
        return msg


def sse_events(body: bytes) -> list[tuple[str, str]]:
    """Server-sent events in a body: (event, data) pairs (event "" when not named)."""
    events = []
    for block in re.split(rb"\r?\n\r?\n", body):
        name, data = "", []
        for line in block.splitlines():
            if line.startswith(b"event:"):
                name = line[6:].strip().decode(errors="replace")
            elif line.startswith(b"data:"):
                data.append(line[5:].removeprefix(b" ").decode(errors="replace"))
        if data:
            events.append((name, "\n".join(data)))
    return events
