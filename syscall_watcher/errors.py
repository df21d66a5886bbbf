"""The one exception family the CLI turns into a single red line and a non-zero exit."""

from __future__ import annotations

import os


class SwatchError(Exception):
    """A problem the user can act on. ``str(err)`` is the whole one-line message."""


class BpfError(SwatchError):
    """A libbpf or kernel call failed: carries errno, os.strerror and libbpf's own words."""

    def __init__(self, what: str, err: int, libbpf_msg: str = "") -> None:
        self.errno = abs(err)
        self.what = what
        self.libbpf_msg = libbpf_msg.strip()
        msg = f"{what}: {os.strerror(self.errno)} (errno {self.errno})"
        if self.libbpf_msg:
            msg += f" — libbpf: {self.libbpf_msg}"
        super().__init__(msg)
