"""Inclusion proofs (RFC 9162 2.1.3) that one record is in the log a signed checkpoint covers.

A proof is one JSON object that a third party checks with only the public key (and, if they
keep one, their own copy of a checkpoint)::

    {"version":1,"seq":S,"record":"<the record's line, without its newline>",
     "tree_size":N,"path":["<64 hex>",...],"checkpoint":{...checkpoints.py's form...}}

The leaf index is the record's seq. Checking: the checkpoint's signature; the record's own hash
(records.py) and that its seq is S; then the root that ``path`` leads to from
SHA-256(0x00 || record) must be the checkpoint's root for a tree of N leaves.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from syscall_watcher.audit import merkle
from syscall_watcher.audit.checkpoints import Checkpoint, fingerprint, parse_checkpoint
from syscall_watcher.audit.records import AuditError, body_problem
from syscall_watcher.audit.verify import LogState, read_checkpoints, segments, walk

PROOF_VERSION = 1


def _record_line(audit_dir: Path, seq: int) -> bytes:
    """The line of record ``seq`` (found by file name, then by scanning that file)."""
    files = [(first, p) for first, p in segments(audit_dir) if first <= seq]
    if not files:
        raise AuditError(f"{audit_dir}: no record {seq}")
    first, path = files[-1]
    with path.open("rb") as f:
        for i, line in enumerate(f, first):
            if i == seq:
                return line.rstrip(b"\n")
    raise AuditError(f"{audit_dir}: no record {seq}")


def prove(audit_dir: Path, seq: int, public: Ed25519PublicKey,
          size: int | None = None) -> dict[str, Any]:
    """The proof that record ``seq`` is in the tree of the latest checkpoint (or of the
    checkpoint of exactly ``size`` records). Walks (and so verifies) the log up to there."""
    probe = LogState(audit_dir=audit_dir)
    read_checkpoints(audit_dir, public, probe)
    if probe.problem is not None:
        raise AuditError(f"the audit log does not verify: {probe.problem}")
    choices = [cp for cp in probe.checkpoints if cp.size > seq and (size is None or
                                                                     cp.size == size)]
    if not choices:
        last = probe.checkpoints[-1].size if probe.checkpoints else 0
        if size is not None:
            raise AuditError(f"no checkpoint of {size} records covers seq {seq}")
        raise AuditError(f"no signed checkpoint covers seq {seq} yet (the last covers {last} "
                         "records; the writer signs one every N records, T seconds, and at "
                         "stop)")
    cp = choices[-1] if size is None else choices[0]
    state = walk(audit_dir, public, collect_leaves=True, stop_after=cp.size)
    if state.problem is not None:
        raise AuditError(f"the audit log does not verify: {state.problem}")
    assert state.leaves is not None
    if len(state.leaves) < cp.size:
        raise AuditError(f"the log holds {len(state.leaves)} records, fewer than checkpoint "
                         f"size {cp.size} (truncated)")
    leaves = state.leaves[:cp.size]
    if state.matched_size < cp.size and merkle.root_of(leaves).hex() != cp.root:
        raise AuditError(f"the tree of {cp.size} records does not match its checkpoint")
    return {"version": PROOF_VERSION, "seq": seq,
            "record": _record_line(audit_dir, seq).decode("ascii"),
            "tree_size": cp.size,
            "path": [h.hex() for h in merkle.inclusion_path(seq, leaves)],
            "checkpoint": cp.as_dict()}


def check_proof(proof: Any, public: Ed25519PublicKey,
                checkpoint: Checkpoint | None = None) -> tuple[dict[str, Any], Checkpoint]:
    """(the proven record, the checkpoint it is proven against), or AuditError saying what
    does not hold. ``checkpoint``: the verifier's own copy (else the proof's is used)."""
    if not isinstance(proof, dict) or proof.get("version") != PROOF_VERSION:
        raise AuditError(f"not a swatch audit proof (version {PROOF_VERSION} expected)")
    seq, size, path, line = (proof.get("seq"), proof.get("tree_size"), proof.get("path"),
                             proof.get("record"))
    if not (isinstance(seq, int) and isinstance(size, int) and isinstance(line, str)
            and isinstance(path, list) and all(isinstance(p, str) for p in path)):
        raise AuditError("malformed proof: needs seq, tree_size, record and path")
    cp = checkpoint if checkpoint is not None else parse_checkpoint(proof.get("checkpoint"))
    if not cp.signature_ok(public):
        raise AuditError(f"the checkpoint (size {cp.size}) is not signed by key "
                         f"{fingerprint(public)}")
    if cp.size != size:
        raise AuditError(f"the proof is for a tree of {size} records, the checkpoint covers "
                         f"{cp.size}")
    try:
        record_bytes = line.encode("ascii")
        hashes = [bytes.fromhex(p) for p in path]
    except ValueError:
        raise AuditError("malformed proof: the record is not ASCII or a path hash not hex") \
            from None
    if any(len(h) != 32 for h in hashes):
        raise AuditError("malformed proof: a path hash is not 32 bytes")
    rec, _digest, what = body_problem(record_bytes)
    if rec is None:
        raise AuditError(f"the record in the proof: {what}")
    if rec["seq"] != seq:
        raise AuditError(f"the record says seq {rec['seq']}, the proof seq {seq}")
    root = merkle.root_from_inclusion(seq, size, merkle.leaf_hash(record_bytes), hashes)
    if root is None:
        raise AuditError(f"the path has the wrong length for leaf {seq} of {size}")
    if root.hex() != cp.root:
        raise AuditError(f"the path does not lead to the checkpoint's root: record {seq} is not "
                         f"proven to be in the log of {size} records")
    return rec, cp
