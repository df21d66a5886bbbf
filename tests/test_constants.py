"""Every number Python shares with the C side is the number the C headers define.

The headers (bpf/include/common.h, bpf/watcher.h, bpf/policy.h, syscall_watcher/kernel/_shim.h)
are compiled into the cffi extension, so ``lib`` holds their real values; a reordered or
renumbered ``#define`` that Python still copies by hand makes the enforcer block the wrong
operation or the decoder print the wrong verb. Each test below fails on such a drift, and names
the constant.
"""

from __future__ import annotations

import re
import socket
from pathlib import Path

from syscall_watcher.policy import enforcer, language as policy, tiers as tier_planning

from syscall_watcher.kernel import syscalls

from syscall_watcher.trace import tracer
from syscall_watcher.kernel._libbpf import ffi, lib

ROOT = Path(__file__).resolve().parent.parent
HEADERS = (ROOT / "bpf" / "include" / "common.h", ROOT / "bpf" / "watcher.h",
           ROOT / "bpf" / "policy.h", ROOT / "syscall_watcher" / "kernel" / "_shim.h")


def header_defines(prefix: str) -> dict[str, int]:
    """``#define <prefix>NAME <int>`` from the headers' source, NAME → value."""
    found: dict[str, int] = {}
    for header in HEADERS:
        for m in re.finditer(rf"^#define\s+{prefix}(\w+)\s+(\d+)\b", header.read_text(), re.M):
            found[m.group(1)] = int(m.group(2))
    assert found, f"no #define {prefix}* in the headers"
    return found


def test_cffi_exposes_every_header_define() -> None:
    """The ties below go through ``lib``: it must hold each numeric define, with its value."""
    for prefix in ("SW_", "SWP_"):
        for name, value in header_defines(prefix).items():
            assert getattr(lib, prefix + name) == value, prefix + name


def test_policy_operations_are_the_swp_op_bits() -> None:
    ops = header_defines("SWP_OP_")
    assert {op.upper() for op in policy.OPERATIONS} == set(ops), "an operation is missing"
    for i, op in enumerate(policy.OPERATIONS):
        assert getattr(lib, f"SWP_OP_{op.upper()}") == i, f"OPERATIONS[{i}] is {op!r}"
        assert policy.OP_BITS[op] == 1 << getattr(lib, f"SWP_OP_{op.upper()}"), op
    assert len(policy.OPERATIONS) <= lib.SWP_OPS
    counts = ffi.new("struct swp_counts *")
    assert len(counts.ops) == lib.SWP_OPS


def test_policy_limits_are_the_bpf_array_sizes() -> None:
    assert policy.SW_POLICY_MAX_PATHS == lib.SWP_MAX_PATHS
    assert policy.SW_POLICY_PATH_MAX == lib.SWP_PATH_MAX
    assert policy.SW_POLICY_MAX_PHASES == lib.SWP_MAX_PHASES
    assert policy.SW_POLICY_PHASE_NAME_MAX == lib.SWP_PHASE_NAME
    assert len(ffi.new("struct swp_counts *").rules) == lib.SWP_MAX_PATHS


def test_verbs_are_sw_verb_in_order() -> None:
    verbs = header_defines("SW_VERB_")
    assert len(syscalls.VERBS) == lib.SW_VERBS == len(verbs)
    for i, verb in enumerate(syscalls.VERBS):
        assert getattr(lib, f"SW_VERB_{verb}") == i, f"VERBS[{i}] is {verb!r}"
    # every verb the data file uses is one the C side knows
    assert {r.verb for r in syscalls.rules().values()} <= set(syscalls.VERBS)


def test_syscall_flags_and_formats_are_sw_sc_and_sw_fmt() -> None:
    assert syscalls._NONE == lib.SW_NONE
    assert syscalls._SC_ENABLED == lib.SW_SC_ENABLED
    assert syscalls._SC_BYTES_IN == lib.SW_SC_BYTES_IN
    assert syscalls._SC_BYTES_OUT == lib.SW_SC_BYTES_OUT
    assert syscalls._SC_FD_AT_ENTER == lib.SW_SC_FD_AT_ENTER
    assert syscalls._SC_ADDRLEN_PTR == lib.SW_SC_ADDRLEN_PTR
    assert syscalls._SC_EXEC == lib.SW_SC_EXEC
    assert syscalls._SC_CLONE3 == lib.SW_SC_CLONE3
    assert syscalls.FMT_RET_FD == lib.SW_FMT_RET_FD
    assert syscalls.FMT_BYTES == lib.SW_FMT_BYTES
    assert syscalls.FMT_HIDDEN == lib.SW_FMT_HIDDEN
    assert syscalls._SC_FAILED_ONLY == lib.SW_SC_FAILED_ONLY
    # Python sets every SW_SC_* flag the header has, through one of these names
    python_flags = {syscalls._SC_ENABLED, syscalls._SC_BYTES_IN, syscalls._SC_BYTES_OUT,
                    syscalls._SC_FAILED_ONLY, *syscalls._BOOL_FLAGS.values()}
    assert python_flags == set(header_defines("SW_SC_").values())


def test_tracer_event_and_target_names() -> None:
    assert tracer.EV_NAMES == {lib.SW_EV_SYSCALL: "syscall", lib.SW_EV_EXEC: "exec",
                               lib.SW_EV_FORK: "fork", lib.SW_EV_EXIT: "exit",
                               lib.SW_EV_URING: "io_uring"}
    assert set(tracer.EV_NAMES) == {v for k, v in header_defines("SW_EV_").items()
                                    if k != "TYPES"}
    assert max(tracer.EV_NAMES) < lib.SW_EV_TYPES
    targets = header_defines("SW_TARGET_")
    assert tracer.MODE_NAMES == {value: name.lower() for name, value in targets.items()}
    assert tracer.MODE_IDS == {name.lower(): value for name, value in targets.items()}


def test_enforcer_tiers_actions_and_reactive_flags() -> None:
    tiers = {k: v for k, v in header_defines("SWP_TIER_").items() if k != "NONE"}
    assert tier_planning.TIER_NAMES == {value: name.lower() for name, value in tiers.items()}
    assert lib.SWP_TIER_NONE not in tier_planning.TIER_NAMES
    assert enforcer.ACTION_NAMES == {value: {"BLOCKED": "blocked", "KILLED": "killed",
                                             "AUDIT": "audit"}[name]
                                     for name, value in header_defines("SWP_ACT_").items()}
    assert tier_planning._N == lib.SWP_NONE
    assert tier_planning._KILL == lib.SWP_R_KILL
    assert tier_planning._OPEN_W == lib.SWP_R_OPEN_WRITE
    assert tier_planning._OPENAT2 == lib.SWP_R_OPENAT2
    # the enforcer's targets are the tracer's modes (SW_TARGET_*, bpf/include/common.h)
    assert not [name for name in dir(lib) if name.startswith("SWP_TARGET_")]


def test_denial_families_and_types_are_the_kernels() -> None:
    from syscall_watcher.policy import denials

    for number, name in denials.FAMILIES.items():
        assert getattr(socket, name) == number, name
    for number, name in denials.TYPES.items():
        assert getattr(socket, name) == number, name
