"""Landlock denials of `swatch run --policy P` (sandbox/landlock_denials.py): a real write under a
protected path, denied by the real Landlock (ABI 7 here), shown as a DENIED line (tier landlock)
from the kernel's own audit record, and counted in the summary. The kernel makes those records
only while audit is enabled: one test switches audit on for its run (AUDIT_SET over netlink, as
`auditctl -e 1` does) and puts back what it found; the other shows the one-line notice a run
gives with audit off."""

from __future__ import annotations

import json
import socket
import struct
from pathlib import Path

import pytest

from conftest import check_record, swatch
from syscall_watcher.sandbox import landlock
from syscall_watcher.sandbox.landlock_denials import audit_enabled

pytestmark = pytest.mark.skipif(landlock.abi() < 7, reason="Landlock ABI 7 logs denials")

AUDIT_SET, AUDIT_STATUS_ENABLED = 1001, 1


def set_audit(enabled: bool) -> None:
    """Switch the kernel's audit on or off (struct audit_status: mask, enabled, ...)."""
    body = struct.pack("=8L", AUDIT_STATUS_ENABLED, int(enabled), 0, 0, 0, 0, 0, 0) + bytes(8)
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 9) as s:
        s.bind((0, 0))
        s.send(struct.pack("=LHHLL", 16 + len(body), AUDIT_SET, 1 | 4, 1, 0) + body)  # REQ|ACK
        ack = s.recv(8192)
    assert struct.unpack_from("=i", ack, 16)[0] == 0, "AUDIT_SET refused"
    assert audit_enabled() == enabled


@pytest.fixture
def audit(request: pytest.FixtureRequest):  # type: ignore[no-untyped-def]
    """Audit in the state the test asks for (its param), then as it was."""
    before = audit_enabled()
    assert before is not None, "cannot read the audit status (AUDIT_GET)"
    set_audit(request.param)
    yield
    set_audit(before)


def protect_policy(tmp_path: Path) -> tuple[Path, Path]:
    prot = tmp_path / "prot"
    prot.mkdir()
    pol = tmp_path / "p.policy"
    pol.write_text(f"protect {prot} write\n")
    return pol, prot


@pytest.mark.parametrize("audit", [True], indirect=True)
def test_landlock_denial_shown_and_counted(audit: None, tmp_path: Path) -> None:
    pol, prot = protect_policy(tmp_path)
    (tmp_path / "out").mkdir()  # a sibling: creating directly in an ancestor of prot is denied
    script = f"echo x > {prot}/f; echo rc=$?; echo y > {tmp_path}/out/ok"
    r = swatch("run", "--policy", str(pol), "--", "/bin/sh", "-c", script)
    assert r.returncode == 0, r.stderr
    assert "rc=2" in r.stdout and not (prot / "f").exists()  # EACCES: sh says 2
    assert (tmp_path / "out" / "ok").read_text() == "y\n"  # outside the protected path
    denied = [ln for ln in r.stderr.splitlines()
              if " DENIED " in ln and not ln.startswith("swatch:")]
    assert len(denied) == 1, r.stderr
    # in time order: the denial comes before the process's exit in the stream
    assert r.stderr.index(" DENIED write ") < r.stderr.index(" EXIT "), r.stderr
    assert denied[0].split(" ", 1)[1].startswith("sh[")
    assert denied[0].endswith(f"DENIED write {prot} at openat (policy p, tier landlock: EACCES, "
                              "fs.make_reg)"), denied
    assert "swatch: DENIED by landlock: write ×1" in r.stderr
    # JSON: the same denial as a record, and in the summary
    r = swatch("run", "--json", "--policy", str(pol), "--", "/bin/sh", "-c", script)
    assert r.returncode == 0, r.stderr
    lines = [json.loads(ln) for ln in r.stderr.splitlines() if ln.startswith("{")]
    recs = [check_record(rec) for rec in lines if rec.get("type") == "denied"]
    assert [(d["op"], d["target"], d["tier"], d["action"], d["errno"], d["syscall"], d["comm"],
             d["blockers"]) for d in recs] == [
        ("write", str(prot), "landlock", "blocked", "EACCES", "openat", "sh", ["fs.make_reg"])]
    execs = [check_record(rec) for rec in lines if rec.get("type") == "exec"]
    assert recs[0]["pid"] == execs[0]["pid"]  # the run's own process (sh), by its pid
    summary = check_record([rec for rec in lines if rec.get("type") == "summary"][-1])
    assert summary["denied"]["landlock"] == {"write": 1}


@pytest.mark.parametrize("audit", [False], indirect=True)
def test_audit_off_says_denials_are_not_shown(audit: None, tmp_path: Path) -> None:
    pol, prot = protect_policy(tmp_path)
    r = swatch("run", "--policy", str(pol), "--", "/bin/sh", "-c", f"echo x > {prot}/f")
    assert r.returncode == 2 and not (prot / "f").exists()  # still denied
    assert ("swatch: Landlock denials hold but are not shown: the kernel reports them only "
            "through audit, which is off here (`auditctl -e 1`, or audit=1 at boot)") in r.stderr
    assert " DENIED " not in r.stderr and "DENIED by landlock" not in r.stderr
