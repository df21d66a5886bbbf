"""Secrets out before anything leaves the consumer: every TLS, HTTP and LLM line goes through
here first. Header values by name (Authorization, x-api-key, cookies, ...) and key-shaped
strings anywhere (``sk-…``, ``AKIA…``, bearer tokens, JSON ``"api_key": "…"``) become
``[REDACTED]``. A capture cut inside a key leaves no prefix of it: a key-shaped start at the
very end of a buffer is redacted too."""

from __future__ import annotations

import re

REDACTED = "[REDACTED]"
# Headers whose whole value is a secret (lower case).
SECRET_HEADERS = frozenset({
    "authorization", "proxy-authorization", "x-api-key", "api-key", "cookie", "set-cookie",
    "x-auth-token", "x-goog-api-key", "openai-organization-key",
})
_HEADER_LINE = re.compile(
    rb"(?im)^(" + b"|".join(re.escape(h.encode()) for h in sorted(SECRET_HEADERS)) +
    rb")([ \t]*:[ \t]*)[^\r\n]*")
_KEY_SHAPES = [
    re.compile(rb"(?i)\b(bearer|basic)[ \t]+[A-Za-z0-9._~+/=\-]+"),
    re.compile(rb"\bsk-[A-Za-z0-9_\-]{6,}"),            # OpenAI / Anthropic (sk-ant-...)
    re.compile(rb"\b(?:AKIA|ASIA)[0-9A-Z]{12,}"),       # AWS access key ids
    re.compile(rb"\bgh[pousr]_[A-Za-z0-9]{20,}"),       # GitHub tokens
    re.compile(rb"\bxox[abpr]-[A-Za-z0-9\-]{10,}"),     # Slack tokens
    re.compile(rb"\bAIza[0-9A-Za-z_\-]{20,}"),          # Google API keys
]
# JSON members named like a secret: "api_key": "...", "password": "..."
_JSON_SECRET = re.compile(
    rb'(?i)("(?:api[_-]?key|access[_-]?token|refresh[_-]?token|secret|password|client_secret)"'
    rb'\s*:\s*)"(?:[^"\\]|\\.)*("|$)')
# The start of a key-shaped string cut by the end of the buffer (shorter than the full shapes).
_CUT_TAIL = re.compile(rb"(?i)(\bsk-[A-Za-z0-9_\-]*|\b(?:AKIA|ASIA)[0-9A-Z]*|\bbearer[ \t]+\S*|"
                       rb"\bgh[pousr]_[A-Za-z0-9]*|\bAIza[0-9A-Za-z_\-]*)$")


def redact_bytes(data: bytes) -> bytes:
    """``data`` with every secret replaced by [REDACTED]."""
    data = _HEADER_LINE.sub(lambda m: m.group(1) + m.group(2) + REDACTED.encode(), data)
    for shape in _KEY_SHAPES:
        if shape.pattern.startswith(rb"(?i)\b(bearer"):
            data = shape.sub(lambda m: m.group(1) + b" " + REDACTED.encode(), data)
        else:
            data = shape.sub(REDACTED.encode(), data)
    data = _JSON_SECRET.sub(lambda m: m.group(1) + b'"' + REDACTED.encode() + b'"', data)
    return _CUT_TAIL.sub(REDACTED.encode(), data)


def redact_text(text: str) -> str:
    return redact_bytes(text.encode("utf-8", "surrogateescape")).decode("utf-8",
                                                                         "surrogateescape")


def redact_headers(headers: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """Header values: the secret ones whole, the others for key-shaped strings."""
    return [(k, REDACTED if k.lower() in SECRET_HEADERS else redact_text(v))
            for k, v in headers]


def redact_value(value: object) -> object:
    """A decoded JSON value (tool-call arguments, ...) with its strings redacted."""
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, list):
        return [redact_value(v) for v in value]
    if isinstance(value, dict):
        return {k: (REDACTED if re.fullmatch(r"(?i)api[_-]?key|access[_-]?token|secret|"
                                             r"password|client_secret|refresh[_-]?token", k)
                    else redact_value(v)) for k, v in value.items()}
    return value


_SECRET_NAME = re.compile(r"(?i)key|token|secret|password|passwd|credential|authorization")
_ARG_HEADER = re.compile(r"(?i)^(authorization|proxy-authorization|x-api-key|api-key|cookie|"
                         r"set-cookie|x-auth-token|x-goog-api-key):")
_NAME_VALUE = re.compile(r"^(-{0,2}[A-Za-z0-9_][A-Za-z0-9_\-]*)=")


def redact_argv(argv: list[str]) -> list[str]:
    """A command line with its secrets redacted (the rules of the EXEC formatter,
    syscall_watcher/kernel/shim/text.c sw_redact_arg): the value after a secret-named flag
    (``--api-key V``), ``NAME=V`` / ``--flag=V`` with a secret-sounding NAME, a secret header
    (``Authorization: ...``), and key-shaped strings anywhere."""
    out = []
    prev = ""
    for arg in argv:
        if (prev.startswith("--") and "=" not in prev and len(prev) > 2
                and _SECRET_NAME.search(prev[2:])):
            out.append(REDACTED)
        elif m := _ARG_HEADER.match(arg):
            out.append(f"{m.group(0)} {REDACTED}")
        elif (m := _NAME_VALUE.match(arg)) and _SECRET_NAME.search(m.group(1)):
            out.append(m.group(0) + REDACTED)
        else:
            out.append(redact_text(arg))
        prev = arg
    return out
