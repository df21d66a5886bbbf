"""The tamper-evident audit log: hash-chained JSON-lines records, an RFC 6962 Merkle tree over
them, Ed25519-signed checkpoints, inclusion proofs (issue 14).

- records.py      one record: canonical encoding, hash chain, record kinds
- merkle.py       RFC 6962 tree hashing, inclusion paths and their verification
- checkpoints.py  signed checkpoints and the signing key
- log.py          the writer (``AuditLog``): batches, fsync, checkpoints, crash recovery
- verify.py       reading the log back and checking all of it
- proof.py        inclusion proofs for one record, and checking them
- repair.py       setting a corrupt tail aside

``swatch serve`` appends through ``AuditLog``; ``swatch audit`` reads through the rest.

Each name below is imported from its module when first used (PEP 562), so that importing the
package — every `swatch` command does, through cli/audit.py — does not load cryptography
(13 MB of a `swatch run`'s resident memory).
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

DEFAULT_DIR = Path("/var/lib/swatch/audit")

_WHERE = {"Checkpoint": "checkpoints", "load_public": "checkpoints",
          "parse_checkpoint": "checkpoints", "AuditLog": "log", "CorruptLog": "log",
          "check_proof": "proof", "prove": "proof", "AuditError": "records", "repair": "repair",
          "LogState": "verify", "Problem": "verify", "walk": "verify"}


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)
    globals()[name] = value  # over the submodule the import set (repair.repair)
    return value


__all__ = ["DEFAULT_DIR", "AuditError", "AuditLog", "Checkpoint", "CorruptLog", "LogState",
           "Problem", "check_proof", "load_public", "parse_checkpoint", "prove", "repair", "walk"]
