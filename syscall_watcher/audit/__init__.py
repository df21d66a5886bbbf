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
"""

from syscall_watcher.audit.checkpoints import Checkpoint, load_public, parse_checkpoint
from syscall_watcher.audit.log import DEFAULT_DIR, AuditLog, CorruptLog
from syscall_watcher.audit.proof import check_proof, prove
from syscall_watcher.audit.records import AuditError
from syscall_watcher.audit.repair import repair
from syscall_watcher.audit.verify import LogState, Problem, walk

__all__ = ["DEFAULT_DIR", "AuditError", "AuditLog", "Checkpoint", "CorruptLog", "LogState",
           "Problem", "check_proof", "load_public", "parse_checkpoint", "prove", "repair", "walk"]
