"""The --tls consumer's parsing, on byte streams as the uprobes deliver them (any split, cut
captures): HTTP/1.1 framing, server-sent events, chat-completions recognition, redaction.
No kernel here: tests/test_tls.py runs the same code on real TLS traffic."""

from __future__ import annotations

import json

from fake_model import TOOL_CALLS, anthropic_body, openai_body
from syscall_watcher.tls.http import HttpStream
from syscall_watcher.tls.llm import llm_request, llm_response
from syscall_watcher.tls.redact import redact_bytes, redact_headers


def chunked(events: list[str]) -> bytes:
    out = b""
    for ev in events:
        raw = ev.encode()
        out += f"{len(raw):x}\r\n".encode() + raw + b"\r\n"
    return out + b"0\r\n\r\n"


def feed_split(stream: HttpStream, data: bytes, step: int) -> list:  # type: ignore[type-arg]
    msgs = []
    for i in range(0, len(data), step):
        part = data[i:i + step]
        msgs += stream.feed(part, len(part))
    return msgs


def test_streamed_openai_answer_split_anywhere() -> None:
    events = [f"data: {json.dumps(d)}\n\n" for d in openai_body(True)] + ["data: [DONE]\n\n"]
    body = chunked(events)
    head = (b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n")
    for step in (1, 7, 100, 4096):
        msgs = feed_split(HttpStream("response"), head + body, step)
        assert len(msgs) == 1 and msgs[0].complete and msgs[0].chunked
        resp = llm_response(msgs[0], "openai")
        assert resp is not None
        assert [(c["name"], c["arguments"]) for c in resp["tool_calls"]] == TOOL_CALLS
        assert resp["tokens"] == {"input": 42, "output": 17} and resp["stream"]


def test_anthropic_plain_and_streamed() -> None:
    plain = json.dumps(anthropic_body(False)).encode()
    msg = HttpStream("response").feed(
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
        + str(len(plain)).encode() + b"\r\n\r\n" + plain, 10**6)
    # total > len(data): a capture cut after the body changes nothing already complete
    resp = llm_response(msg[0], "anthropic")
    assert resp and [(c["name"], c["arguments"]) for c in resp["tool_calls"]] == TOOL_CALLS
    assert resp["text"] == "Let me look." and resp["finish_reason"] == "tool_use"
    events = [f"event: {n}\ndata: {json.dumps(d)}\n\n" for n, d in anthropic_body(True)]
    head = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
    msgs = feed_split(HttpStream("response"), head + chunked(events), 13)
    resp = llm_response(msgs[0], "anthropic")
    assert resp and [(c["name"], c["arguments"]) for c in resp["tool_calls"]] == TOOL_CALLS
    assert resp["tokens"] == {"input": 30, "output": 12}


def test_cut_capture_counts_the_body_and_resyncs() -> None:
    s = HttpStream("request")
    head = b"POST /v1/chat/completions HTTP/1.1\r\nContent-Length: 10000\r\n\r\n"
    msgs = s.feed(head + b"x" * 100, len(head) + 10000)  # the call moved all, 100 captured
    assert len(msgs) == 1 and msgs[0].body_bytes == 10000 and msgs[0].body_cut == 9900
    assert msgs[0].complete and llm_request(msgs[0]) is None
    # chunked framing with a hole: the message is given up, the next one parsed
    r = HttpStream("response")
    head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    cut = r.feed(head + b"1000\r\n" + b"y" * 50, len(head) + 6 + 4096)
    assert len(cut) == 1 and not cut[0].complete and cut[0].body_cut == 4096 - 50
    assert r.feed(b"garbage", 7) == []
    nxt = r.feed(b"HTTP/1.1 204 No Content\r\n\r\n", 27)
    assert [m.status for m in nxt] == [204] and r.resyncs == 1


def test_redaction() -> None:
    raw = (b"POST / HTTP/1.1\r\nAuthorization: Bearer abc.def\r\nx-api-key: k1\r\n"
           b"Cookie: a=b\r\n\r\n{\"api_key\": \"v\", \"note\": \"AKIAABCDEFGHIJKLMNOP sk-"
           b"abcdefgh123\", \"t\": \"Bearer tok\"} then cut sk-ab")
    out = redact_bytes(raw)
    for secret in (b"abc.def", b"k1", b"a=b", b'"v"', b"AKIAABCDEFGHIJKLMNOP", b"sk-abcdefgh123",
                   b"tok", b"sk-ab"):
        assert secret not in out, (secret, out)
    assert out.count(b"[REDACTED]") == 8
    assert redact_headers([("Set-Cookie", "s=1"), ("X-Other", "sk-0123456789")]) == [
        ("Set-Cookie", "[REDACTED]"), ("X-Other", "[REDACTED]")]


def test_redact_argv_rules() -> None:
    """The run summary's and `record`'s command lines: the rules of the EXEC formatter
    (shim/text.c sw_redact_arg; tests/test_tls.py checks that side on real EXEC records)."""
    from syscall_watcher.tls.redact import redact_argv

    assert redact_argv(["curl", "-H", "Authorization: Bearer sk-abc1234567", "--api-key", "zzz",
                        "--token=t0k", "OPENAI_API_KEY=xyz", "use sk-proj-ABCDEFGH now",
                        "task-sk-abcdefgh", "--author", "me", "a=b", "--api-key=1", "keep"]) == \
        ["curl", "-H", "Authorization: [REDACTED]", "--api-key", "[REDACTED]",
         "--token=[REDACTED]", "OPENAI_API_KEY=[REDACTED]", "use [REDACTED] now",
         "task-[REDACTED]", "--author", "me", "a=b", "--api-key=[REDACTED]", "keep"]
