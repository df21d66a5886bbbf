"""One audit record: its canonical bytes, its place in the hash chain, and how it is checked.

A record is one line of a ``records-<first seq>.jsonl`` file::

    {"event":{...},"kind":"event","prev":"<64 hex>","seq":41,"time_ns":...,"hash":"<64 hex>"}

- ``body`` = every member but ``hash``, in the canonical encoding (``canonical`` below).
- ``hash`` = hex SHA-256 of ``body``; ``prev`` = the previous record's ``hash`` (64 zeros for
  seq 0), so each record seals the whole history before it.
- The line is ``body`` with ``,"hash":"<hex>"`` put before its closing brace, then ``\\n``:
  the hash member comes last, so a reader recovers ``body`` exactly by cutting it off.
- The Merkle leaf of the record is the line without its ``\\n`` (see merkle.py).

The canonical encoding is Python's ``json.dumps(value, sort_keys=True, separators=(",", ":"),
ensure_ascii=True, allow_nan=False)``: object keys sorted by code point, no whitespace,
strings escaped as JSON requires with every non-ASCII character as ``\\uXXXX`` (lowercase hex,
surrogate pairs above U+FFFF), so a line is plain ASCII and carries the lone surrogates swatch
uses for bytes that were not UTF-8 (text.py); integers in decimal; floats as Python's
``repr`` (the shortest text that reads back to the same double). That is RFC 8785 (JCS) but for
two choices, both so that every event swatch emits has exactly one encoding: non-ASCII is
escaped rather than raw UTF-8, and floats keep Python's form (``1.0``, ``1e+16``) where JCS
would write ``1`` and ``10000000000000000``.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

from syscall_watcher.errors import SwatchError

GENESIS = "0" * 64
HASH_MEMBER = re.compile(rb',"hash":"([0-9a-f]{64})"\}$')
HASH_MEMBER_LEN = len(b',"hash":"') + 64 + len(b'"}')

# Every record has kind, seq, prev, time_ns (wall clock, ns since the epoch, when appended).
KINDS = {
    # A record of the event stream (a denial, a chosen trace event), the event kept as given.
    "event": ("event",),
    # Records lost before they reached the log (ring buffer full): how many, of what, and the
    # last record written before the loss was noticed (None: none yet).
    "gap": ("what", "lost", "after_seq"),
    # A kernel component loaded, unloaded or changed phase (tracer, policy, ...).
    "lifecycle": ("component", "action", "detail"),
    # The log's own entries: start, stop, torn_tail (a crash cut the last line), repair.
    "log": ("what", "detail"),
}

_encoder = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=True,
                            allow_nan=False)


class AuditError(SwatchError):
    """The audit log cannot be used as asked (the message says where and what)."""


def canonical(value: Any) -> bytes:
    """The canonical encoding of a JSON value (module docstring)."""
    try:
        return _encoder.encode(value).encode("ascii")
    except (TypeError, ValueError) as err:
        raise AuditError(f"not a JSON value the audit log can encode: {err}") from None


def seal(body: dict[str, Any]) -> tuple[bytes, str]:
    """(line with its newline, hash) of a record body (every member but ``hash``)."""
    data = canonical(body)
    digest = hashlib.sha256(data).hexdigest()
    return data[:-1] + b',"hash":"' + digest.encode() + b'"}\n', digest


def split_line(line: bytes) -> tuple[bytes, str] | None:
    """(body bytes, hash) of a line without its newline, or None when it does not end in a
    hash member."""
    m = HASH_MEMBER.search(line, len(line) - HASH_MEMBER_LEN)
    if m is None:
        return None
    return line[:m.start()] + b"}", m.group(1).decode()


def body_problem(line: bytes, strict: bool = True) -> tuple[dict[str, Any] | None, str, str]:
    """Check one line (without its newline) on its own: (record, hash, "") when it is a sealed
    record (and, when ``strict``, in the canonical encoding), else (None, hash, what is
    wrong). The hash covers the stored bytes, so tampering is caught either way; ``strict``
    also proves a third party re-encoding the record gets the same bytes (it costs as much as
    the rest of the check)."""
    parts = split_line(line)
    if parts is None:
        return None, "", "not a sealed record (no hash member at its end)"
    body, digest = parts
    if hashlib.sha256(body).hexdigest() != digest:
        return None, digest, "hash does not match the record's contents (edited?)"
    try:
        rec = json.loads(body)
    except ValueError:
        return None, digest, "not valid JSON"
    if not isinstance(rec, dict):
        return None, digest, "not a JSON object"
    if strict and canonical(rec) != body:
        return None, digest, "not in the canonical encoding (rewritten?)"
    kind = rec.get("kind")
    fields = KINDS.get(kind) if isinstance(kind, str) else None
    if fields is None:
        return None, digest, f"unknown record kind {kind!r}"
    missing = [f for f in ("seq", "prev", "time_ns", *fields) if f not in rec]
    if missing:
        return None, digest, f"{kind} record without {', '.join(missing)}"
    if not isinstance(rec["seq"], int) or not isinstance(rec["prev"], str):
        return None, digest, "seq or prev of the wrong type"
    return rec, digest, ""


def describe(rec: dict[str, Any]) -> str:
    """A short human description of a record's contents (for show/tail and messages)."""
    kind = rec.get("kind")
    if kind == "event":
        ev = rec.get("event") or {}
        parts = [str(ev.get("type", "event"))]
        for key, value in ev.items():
            if key in ("type", "time", "time_ns") or value is None or value is False \
                    or value == "":
                continue
            parts.append(f"{key}={value}")
        return " ".join(parts)
    if kind == "gap":
        after = rec.get("after_seq")
        where = f"between seq {after} and {rec['seq']}" if after is not None else \
            f"before seq {rec['seq']}"
        return f"GAP {rec.get('lost')} {rec.get('what')} lost {where}"
    if kind == "lifecycle":
        detail = rec.get("detail") or {}
        extra = " ".join(f"{k}={v}" for k, v in detail.items()) if isinstance(detail, dict) \
            else str(detail)
        return f"{rec.get('component')} {rec.get('action')} {extra}".rstrip()
    if kind == "log":
        detail = rec.get("detail") or {}
        extra = " ".join(f"{k}={v}" for k, v in detail.items()) if isinstance(detail, dict) \
            else str(detail)
        return f"audit log {rec.get('what')} {extra}".rstrip()
    return str(kind)
