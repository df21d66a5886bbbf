"""What the kernel's verifier spends on each enforcer program, loaded as `swatch policy-load`
loads it.

For each policy given (a built-in name or a file; default: the path-rule policies the VM tests
load), plans the tiers as policy-load does, then loads the enforcer (a held child as the target)
with every program's log level set to BPF_LOG_STATS (4: the verifier's summary only) and prints
per program: the verification time the kernel reports, the instructions it processed and the
states it kept; then the wall time of the plan (its probe loads) and of bpf_object__load as a
whole. Nothing is left loaded. Run it on the host (cgroup and reactive tiers) or in a VM with
the hook tiers:

    flock /tmp/swatch-kernel.lock .venv/bin/python bench/policy_verifier.py [POLICY ...]
    flock /tmp/swatch-kernel.lock flock /tmp/swatch-vm.lock env VM_KERNEL=6.1 VM_CPUS=1 \\
        tools/vm-run.sh bpf-lsm .venv/bin/python bench/policy_verifier.py
"""

from __future__ import annotations

import argparse
import ctypes
import os
import signal
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.verifier import parse, stats_logs  # noqa: E402
from syscall_watcher.kernel import libbpf  # noqa: E402
from syscall_watcher.policy import enforcer, tiers  # noqa: E402
from syscall_watcher.policy.language import load_policy  # noqa: E402
from syscall_watcher.targets.target import Target  # noqa: E402

# The policies of tests/test_policy_vm_inner.py's slow tests: two built-ins, and the bypass
# test's own (path rules for every path hook, file_open included).
BYPASS = "protect {d}/prot write unlink rename mkdir rmdir\nprotect /etc file_open\n"
DEFAULT = ["read-only-fs", "protect-system", "bypass"]

_logs: dict[str, ctypes.Array] = {}  # type: ignore[type-arg]
_load_s: list[float] = []
_real_load = libbpf.BpfObject.load


def _load_with_stats(self: libbpf.BpfObject) -> None:
    # the enforcer's load (a pid target: the process tree's programs), not a probe's
    stats = self.programs["swp_fork"].autoload
    if stats:
        stats_logs(self, _logs)
    t0 = time.monotonic()
    _real_load(self)
    if stats:
        _load_s.append(time.monotonic() - t0)


def one(name: str, source: str) -> None:
    _logs.clear()
    _load_s.clear()
    policy = load_policy(source)
    pid = os.fork()
    if pid == 0:
        signal.pause()
        os._exit(0)
    try:
        t0 = time.monotonic()
        plans = tiers.plan(policy)
        plan_s = time.monotonic() - t0
        loaded = enforcer.LoadedPolicy.load(policy, Target(mode="pid", pid=pid, label="bench"),
                                            plans)
        loaded.close()
    finally:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    print(f"\n{name} (tiers: {', '.join(sorted({p.tier for p in plans}))})")
    print("| program | verification (ms) | insns processed | states |")
    print("|---|---|---|---|")
    total = 0.0
    for prog, buf in sorted(_logs.items()):
        ms, insns, states = parse(buf.value.decode(errors="replace"))
        total += ms
        print(f"| {prog} | {ms:.1f} | {insns:,} | {states:,} |")
    print(f"| all programs | {total:.1f} | | |")
    print(f"plan (probe loads): {plan_s * 1000:.0f} ms; bpf_object__load wall: "
          f"{_load_s[-1] * 1000:.0f} ms", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("policies", nargs="*", default=DEFAULT)
    args = ap.parse_args()
    libbpf.BpfObject.load = _load_with_stats  # type: ignore[method-assign]
    print(f"kernel {os.uname().release}; load average {os.getloadavg()[0]:.2f}")
    with tempfile.TemporaryDirectory() as d:
        for name in args.policies:
            source = name
            if name == "bypass":
                (Path(d) / "prot").mkdir()
                source = str(Path(d) / "bypass.policy")
                Path(source).write_text(BYPASS.format(d=d))
            one(name, source)


if __name__ == "__main__":
    main()
