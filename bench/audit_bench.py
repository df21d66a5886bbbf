#!/usr/bin/env python3
"""Audit log throughput: append N denial-shaped records (batches of B, one fsync each, a signed
checkpoint every C records), then verify all of them (chain, tree, signatures) as
`swatch audit verify` does, and prove and check one inclusion proof. Prints one JSON object.

    .venv/bin/python bench/audit_bench.py [--records 1000000] [--batch 1000] [--dir DIR]

The records are synthetic (the shape of a `denied` event: the kernel cannot be made to deny a
million times in a benchmark's time); what is measured is the log, not the kernel. The log is
written under --dir (default: a fresh directory in /var/tmp, removed afterwards).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from syscall_watcher.audit import AuditLog, check_proof, load_public, prove, walk  # noqa: E402


def denial(i: int) -> dict:  # type: ignore[type-arg]
    return {"type": "denied", "time": 1763870000.0 + i / 1e6, "pid": 4000 + i % 97,
            "tid": 4000 + i % 97, "ppid": 1, "uid": 1000, "comm": "agent",
            "cgroup_id": 12345, "op": "connect", "target": f"10.0.{i % 256}.{i % 253}:443",
            "action": "blocked", "tier": "cgroup", "policy": "no-network", "rule": "block",
            "syscall": "connect", "truncated": False}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--records", type=int, default=1_000_000)
    ap.add_argument("--batch", type=int, default=1000)
    ap.add_argument("--checkpoint-every", type=int, default=10_000)
    ap.add_argument("--dir", type=Path)
    args = ap.parse_args()
    base = Path(tempfile.mkdtemp(prefix="swatch-audit-bench-", dir="/var/tmp")) \
        if args.dir is None else args.dir
    audit_dir = base / "audit"
    try:
        t0 = time.perf_counter()
        with AuditLog.open(audit_dir, checkpoint_every=args.checkpoint_every,
                           checkpoint_seconds=3600) as log:
            i = 0
            while i < args.records:
                n = min(args.batch, args.records - i)
                log.append_batch([denial(j) for j in range(i, i + n)])
                i += n
        append_s = time.perf_counter() - t0
        pub = load_public(audit_dir / "audit.pub")
        size = sum(p.stat().st_size for p in audit_dir.glob("records-*.jsonl"))

        t0 = time.perf_counter()
        state = walk(audit_dir, pub)
        verify_s = time.perf_counter() - t0
        if state.problem is not None:
            sys.exit(f"audit_bench: the log does not verify: {state.problem}")

        t0 = time.perf_counter()
        proof = prove(audit_dir, state.records // 2, pub)
        prove_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        check_proof(proof, pub)
        check_s = time.perf_counter() - t0
        print(json.dumps({
            "records": state.records, "bytes": size, "files": len(state.files),
            "checkpoints": len(state.checkpoints), "batch": args.batch,
            "append_s": round(append_s, 3),
            "append_records_per_s": round(state.records / append_s),
            "verify_s": round(verify_s, 3),
            "verify_records_per_s": round(state.records / verify_s),
            "prove_s": round(prove_s, 3), "check_proof_ms": round(check_s * 1000, 3),
            "proof_path_len": len(proof["path"]),
        }, indent=1))
    finally:
        if args.dir is None:
            shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
