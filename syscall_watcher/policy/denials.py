"""A loaded policy's denials as a stream source: the enforcer's own ring buffer, read by the same
Streamer as the tracer's events and written by the same C formatter (kernel/shim/), so a
denial carries the same header fields as every trace record (``type``, ``time_ns``, ``pid``,
``tid``, ``ppid``, ``uid``, ``cgroup_id``, ``comm``, ``container``) and the same human prefix.

The formatter is told here what the record's numbers are called: operations (the policy
language's OPERATIONS), tiers and actions (the enforcer's), socket families and types, and the
loaded policy's name and path rules.
"""

from __future__ import annotations

import io
import json

from syscall_watcher.kernel import libbpf
from syscall_watcher.kernel.libbpf import RingConsumer, lib
from syscall_watcher.policy.enforcer import ACTION_NAMES
from syscall_watcher.policy.maps import PolicySession
from syscall_watcher.policy.tiers import TIER_NAMES
from syscall_watcher.policy.language import OPERATIONS
from syscall_watcher.trace.stream import Source, Streamer

# A denied socket(): "AF_INET SOCK_STREAM" (tests/test_constants.py ties them to the kernel's).
FAMILIES = {1: "AF_UNIX", 2: "AF_INET", 10: "AF_INET6", 16: "AF_NETLINK", 17: "AF_PACKET"}
TYPES = {1: "SOCK_STREAM", 2: "SOCK_DGRAM", 3: "SOCK_RAW", 5: "SOCK_SEQPACKET"}


def name_denials(session: PolicySession) -> None:
    """Tell the formatter the names a denial of this policy is written with."""
    libbpf.set_denial_names(lib.SW_NAMES_OP, dict(enumerate(OPERATIONS)))
    libbpf.set_denial_names(lib.SW_NAMES_TIER, TIER_NAMES)
    libbpf.set_denial_names(lib.SW_NAMES_ACTION, ACTION_NAMES)
    libbpf.set_denial_names(lib.SW_NAMES_FAMILY, FAMILIES)
    libbpf.set_denial_names(lib.SW_NAMES_SOCKTYPE, TYPES)
    libbpf.set_denial_policy(session.policy_name(), session.path_rules())


class DenialSource(Source):
    """The enforcer's denial ring. It needs no consumer to emit: denials wait in the ring
    until read (or are counted as dropped when it is full; `policy-summary` counts them all)."""

    ring = "denials"

    def __init__(self, session: PolicySession) -> None:
        super().__init__()
        self.session = session
        self._untracked_seen = 0

    def attach(self) -> RingConsumer:
        name_denials(self.session)
        counts = self.session.counts()
        self._untracked_seen = counts.untracked + counts.unmarked
        return RingConsumer(self.session.maps["denials"])

    def dropped(self) -> int:
        return self.session.counts().dropped

    def drop_notice(self, new: int, total: int) -> str:
        return (f"swatch: {new} denial records lost (ring buffer full; still counted: "
                "`swatch policy-summary`)\n")

    def notices(self) -> list[str]:
        counts = self.session.counts()
        untracked = counts.untracked + counts.unmarked
        new = untracked - self._untracked_seen
        self._untracked_seen = untracked
        if new:
            return [f"swatch: {new} processes of the target found no room in the policy's map "
                    "(--max-pids); see `swatch policy-summary`\n"]
        return []


def read_denials(session: PolicySession) -> list[dict]:  # type: ignore[type-arg]
    """Every denial waiting in the policy's ring buffer (taken out of it), as the JSON records
    `swatch watch --json` writes."""
    out = io.BytesIO()
    with Streamer(DenialSource(session), out, json=True) as stream:
        stream.finish()
    return [json.loads(line) for line in out.getvalue().splitlines()]
