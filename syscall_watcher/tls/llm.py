"""Chat-completions exchanges in HTTP messages: OpenAI (and compatible) ``/chat/completions``
and Anthropic ``/v1/messages``, streamed (server-sent events) or not. A request is one whose
JSON body has ``model`` and a ``messages`` list; its response is the next one on the same
connection. Values are redacted before they are returned."""

from __future__ import annotations

import json
from typing import Any

from syscall_watcher.tls.http import HttpMessage, sse_events
from syscall_watcher.tls.redact import redact_text, redact_value

TEXT_MAX = 200  # characters of the answer's text kept in the record


def _json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None


def api_of(msg: HttpMessage, body: dict[str, Any]) -> str:
    path = msg.target.split("?")[0]
    if path.endswith("/chat/completions"):
        return "openai"
    if path.endswith("/messages") or msg.header("anthropic-version"):
        return "anthropic"
    return "openai-compatible"


def llm_request(msg: HttpMessage) -> dict[str, Any] | None:
    """The LLM request record's fields, or None if msg is not a chat-completions request."""
    if msg.kind != "request" or not msg.body:
        return None
    body = _json(msg.body)
    if not isinstance(body, dict) or not isinstance(body.get("messages"), list) \
            or "model" not in body:
        return None
    tools = []
    for t in body.get("tools") or []:
        if isinstance(t, dict):
            fn = t.get("function") if isinstance(t.get("function"), dict) else t
            if isinstance(fn.get("name"), str):
                tools.append(redact_text(fn["name"]))
    return {"api": api_of(msg, body), "model": redact_text(str(body.get("model"))),
            "messages": len(body["messages"]), "tools": tools,
            "stream": bool(body.get("stream"))}


def _args(raw: Any) -> Any:
    """Tool-call arguments: JSON text decoded when it parses, else kept as text."""
    if isinstance(raw, str):
        parsed = _json(raw.encode())
        return redact_value(parsed) if parsed is not None or raw == "null" else redact_text(raw)
    return redact_value(raw)


def _result(api: str, model: str, calls: list[dict[str, Any]], text: str, tokens_in: Any,
            tokens_out: Any, finish: Any, stream: bool) -> dict[str, Any]:
    return {"api": api, "model": redact_text(model or ""), "stream": stream,
            "tool_calls": calls, "text": redact_text(text[:TEXT_MAX]),
            "text_chars": len(text),
            "tokens": {"input": tokens_in if isinstance(tokens_in, int) else None,
                       "output": tokens_out if isinstance(tokens_out, int) else None},
            "finish_reason": str(finish) if finish is not None else None}


def _openai(body: dict[str, Any], api: str) -> dict[str, Any]:
    choice = (body.get("choices") or [{}])[0] or {}
    message = choice.get("message") or {}
    calls = [{"name": redact_text(str((c.get("function") or {}).get("name", ""))),
              "arguments": _args((c.get("function") or {}).get("arguments"))}
             for c in message.get("tool_calls") or [] if isinstance(c, dict)]
    usage = body.get("usage") or {}
    return _result(api, body.get("model", ""), calls, message.get("content") or "",
                   usage.get("prompt_tokens"), usage.get("completion_tokens"),
                   choice.get("finish_reason"), False)


def _anthropic(body: dict[str, Any], api: str) -> dict[str, Any]:
    calls, text = [], ""
    for block in body.get("content") or []:
        if not isinstance(block, dict):
            continue
        if block.get("type") == "tool_use":
            calls.append({"name": redact_text(str(block.get("name", ""))),
                          "arguments": _args(block.get("input"))})
        elif block.get("type") == "text":
            text += str(block.get("text", ""))
    usage = body.get("usage") or {}
    return _result(api, body.get("model", ""), calls, text, usage.get("input_tokens"),
                   usage.get("output_tokens"), body.get("stop_reason"), False)


def _openai_stream(events: list[tuple[str, str]], api: str) -> dict[str, Any]:
    calls: dict[int, dict[str, str]] = {}
    text, model, finish, usage = "", "", None, {}
    for _, data in events:
        if data.strip() == "[DONE]":
            continue
        chunk = _json(data.encode())
        if not isinstance(chunk, dict):
            continue
        model = chunk.get("model") or model
        usage = chunk.get("usage") or usage
        for choice in chunk.get("choices") or []:
            delta = choice.get("delta") or {}
            text += delta.get("content") or ""
            finish = choice.get("finish_reason") or finish
            for c in delta.get("tool_calls") or []:
                slot = calls.setdefault(int(c.get("index", len(calls))),
                                        {"name": "", "arguments": ""})
                fn = c.get("function") or {}
                slot["name"] += fn.get("name") or ""
                slot["arguments"] += fn.get("arguments") or ""
    out = [{"name": redact_text(c["name"]), "arguments": _args(c["arguments"])}
           for _, c in sorted(calls.items())]
    return _result(api, model, out, text, usage.get("prompt_tokens"),
                   usage.get("completion_tokens"), finish, True)


def _anthropic_stream(events: list[tuple[str, str]], api: str) -> dict[str, Any]:
    blocks: dict[int, dict[str, str]] = {}
    text, model, finish, tin, tout = "", "", None, None, None
    for _, data in events:
        ev = _json(data.encode())
        if not isinstance(ev, dict):
            continue
        kind = ev.get("type")
        if kind == "message_start":
            m = ev.get("message") or {}
            model = m.get("model") or model
            tin = (m.get("usage") or {}).get("input_tokens", tin)
        elif kind == "content_block_start":
            b = ev.get("content_block") or {}
            if b.get("type") == "tool_use":
                blocks[int(ev.get("index", 0))] = {"name": str(b.get("name", "")),
                                                   "arguments": ""}
            elif b.get("type") == "text":
                text += b.get("text") or ""
        elif kind == "content_block_delta":
            d = ev.get("delta") or {}
            if d.get("type") == "input_json_delta" and int(ev.get("index", 0)) in blocks:
                blocks[int(ev.get("index", 0))]["arguments"] += d.get("partial_json") or ""
            elif d.get("type") == "text_delta":
                text += d.get("text") or ""
        elif kind == "message_delta":
            finish = (ev.get("delta") or {}).get("stop_reason", finish)
            tout = (ev.get("usage") or {}).get("output_tokens", tout)
    out = [{"name": redact_text(b["name"]), "arguments": _args(b["arguments"] or "{}")}
           for _, b in sorted(blocks.items())]
    return _result(api, model, out, text, tin, tout, finish, True)


def llm_response(msg: HttpMessage, api: str) -> dict[str, Any] | None:
    """The LLM response record's fields for the answer to a recognised request (None when
    the body says nothing a model would: an error page, a cut body that does not parse)."""
    anthropic = api == "anthropic"
    if msg.content_type == "text/event-stream":
        events = sse_events(msg.body)
        if not events:
            return None
        return _anthropic_stream(events, api) if anthropic else _openai_stream(events, api)
    body = _json(msg.body)
    if not isinstance(body, dict):
        return None
    if "content" in body and anthropic or body.get("type") == "message":
        return _anthropic(body, api)
    if "choices" in body:
        return _openai(body, api)
    return None


def render_call(call: dict[str, Any]) -> str:
    """``name(args)``: the arguments as compact JSON."""
    args = call["arguments"]
    text = args if isinstance(args, str) else json.dumps(args, separators=(",", ":"),
                                                         ensure_ascii=False)
    return f"{call['name']}({text})"
