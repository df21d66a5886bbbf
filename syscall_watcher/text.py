"""Text a workload or a user controls, made safe to print and exact in JSON.

The same two conventions as the C formatter (``kernel/shim/text.c``: ``sw_put_human_text``,
``sw_put_json_str``):

- Bytes that are not UTF-8 are kept as Python's ``surrogateescape`` does (byte 0xXY becomes
  U+DCXY); ``json.dumps`` writes them as ``\\udcXY``, and
  ``s.encode("utf-8", "surrogateescape")`` gives the original bytes back.
- In a human line, C0 controls, DEL, the backslash and such bytes are shown as ``\\xNN``, C1
  and bidirectional controls as ``\\uNNNN``: nothing a workload names can move the cursor,
  recolour or reorder the operator's terminal.
"""

from __future__ import annotations

# C1 controls and the bidirectional marks, overrides and isolates (as kernel/shim/text.c: sw_unsafe_cp).
_UNSAFE = {*range(0x80, 0xA0), *range(0x202A, 0x202F), *range(0x2066, 0x206A), 0x200E,
           0x200F, 0x061C}


def from_c(data: bytes) -> str:
    """A C string (up to its first NUL) as text; bytes that are not UTF-8 surrogate-escaped."""
    return data.split(b"\0", 1)[0].decode("utf-8", "surrogateescape")


def printable(text: str, quote: str = "", backslash: bool = True) -> str:
    """``text`` for a human line: every control escaped (see the module docstring); characters
    in ``quote`` escaped too, and the backslash unless ``backslash`` is false."""
    out: list[str] = []
    for ch in text:
        cp = ord(ch)
        if cp < 0x20 or cp == 0x7F or (backslash and ch == "\\") or ch in quote:
            out.append(f"\\x{cp:02x}")
        elif 0xDC80 <= cp <= 0xDCFF:  # a byte that was not UTF-8
            out.append(f"\\x{cp - 0xDC00:02x}")
        elif cp in _UNSAFE or 0xD800 <= cp <= 0xDFFF:
            out.append(f"\\u{cp:04x}")
        else:
            out.append(ch)
    return "".join(out)


def one_line(text: str) -> str:
    """A message (which may quote user input) as one printable line."""
    return printable(text, backslash=False)
