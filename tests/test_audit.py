"""The audit log (syscall_watcher/audit, `swatch audit`): RFC 6962 hashing against the RFC's
reference roots, inclusion proofs, every kind of tampering caught and named, a writer killed
with SIGKILL losing nothing it fsynced, bad input as one line, and real denials from a loaded
policy carried through the log and proven."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import ROOT, check_audit_record, new_pin_dir, read_audit, swatch, wait_for

from syscall_watcher.audit import AuditError, AuditLog, CorruptLog, load_public, merkle, walk
from syscall_watcher.audit.records import seal

PY = sys.executable
SEG0 = "records-0000000000000000.jsonl"


def audit(*args: str, **kw) -> subprocess.CompletedProcess:  # type: ignore[no-untyped-def]
    """`swatch audit ...` as a user runs it."""
    return swatch("audit", *args, **kw)


def event(i: int) -> dict:  # type: ignore[type-arg]
    return {"type": "denied", "time": 1763870000.25 + i, "pid": 1000 + i, "comm": "agent",
            "op": "connect", "target": f"10.0.0.{i % 250}:443", "action": "blocked"}


@pytest.fixture
def log_dir(tmp_path: Path) -> Path:
    """A closed log: start (seq 0), events seq 1..49, stop (seq 50); a checkpoint every 10
    records (sizes 10, 20, 30, 40, 50) and one at close (51)."""
    d = tmp_path / "audit"
    with AuditLog.open(d, checkpoint_every=10) as log:
        for i in range(49):
            log.append(event(i))
    assert len(read_audit(d, real=False)) == 51  # every record valid (audit.schema.json)
    return d


def lines_of(d: Path) -> list[bytes]:
    return (d / SEG0).read_bytes().splitlines(keepends=True)


def offset_of(d: Path, seq: int) -> int:
    return sum(len(ln) for ln in lines_of(d)[:seq])


def write_lines(d: Path, lines: list[bytes]) -> None:
    (d / SEG0).write_bytes(b"".join(lines))


def bad(d: Path, *extra: str) -> str:
    r = audit("verify", "--audit-dir", str(d), *extra)
    assert r.returncode == 1, (r.stdout, r.stderr)
    err = [ln for ln in r.stderr.splitlines() if ln.startswith("swatch: error:")]
    assert len(err) == 1 and "Traceback" not in r.stderr, r.stderr
    return err[0]


# ------------------------------------------------------------------------------ the tree


# RFC 6962's reference inputs and the roots of their first n (as transparency-dev/merkle and
# the CT reference implementation publish them).
RFC_INPUTS = ["", "00", "10", "2021", "3031", "40414243", "5051525354555657",
              "606162636465666768696a6b6c6d6e6f"]
RFC_ROOTS = ["6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
             "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
             "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
             "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
             "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
             "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
             "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
             "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328"]


def test_rfc6962_reference_roots() -> None:
    assert merkle.root_of([]).hex() == hashlib.sha256(b"").hexdigest()
    leaves = [merkle.leaf_hash(bytes.fromhex(x)) for x in RFC_INPUTS]
    f = merkle.Frontier()
    for n, leaf in enumerate(leaves, 1):
        f.append(leaf)
        assert f.root().hex() == RFC_ROOTS[n - 1], n
        assert merkle.root_of(leaves[:n]).hex() == RFC_ROOTS[n - 1], n


def test_inclusion_paths_every_leaf_of_every_size() -> None:
    leaves = [merkle.leaf_hash(f"leaf {i}".encode()) for i in range(70)]
    for n in range(1, 71):
        root = merkle.root_of(leaves[:n])
        for m in range(n):
            path = merkle.inclusion_path(m, leaves[:n])
            assert merkle.root_from_inclusion(m, n, leaves[m], path) == root, (m, n)
            # the wrong leaf, the wrong index, a changed or shortened path: never that root
            assert merkle.root_from_inclusion(m, n, leaves[(m + 1) % 70], path) != root
            if n > 1:
                assert merkle.root_from_inclusion((m + 1) % n, n, leaves[m], path) != root
                changed = [path[0][:-1] + bytes([path[0][-1] ^ 1])] + path[1:]
                assert merkle.root_from_inclusion(m, n, leaves[m], changed) != root
                assert merkle.root_from_inclusion(m, n, leaves[m], path[:-1]) != root
            # nor does it prove the leaf into the next tree up
            if n < 70:
                assert merkle.root_from_inclusion(m, n + 1, leaves[m], path) != \
                    merkle.root_of(leaves[:n + 1])


# ---------------------------------------------------------------------- the log verifies


def test_verify_ok(log_dir: Path) -> None:
    r = audit("verify", "--audit-dir", str(log_dir), "--strict")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("ok: 51 records (seq 0..50) in 1 file(s): chain intact, "
                               "6 checkpoints signed by sha256:")
    r = audit("verify", "--audit-dir", str(log_dir), "--json")
    res = json.loads(r.stdout)
    assert res["ok"] and res["records"] == 51 and res["checkpoints"] == 6
    assert res["signed_records"] == 51 and res["unsigned_records"] == 0
    first = json.loads(lines_of(log_dir)[1])
    assert first["kind"] == "event" and first["event"] == event(0) and first["seq"] == 1
    # the hash is SHA-256 over the record without it, in the canonical encoding
    body = {k: v for k, v in first.items() if k != "hash"}
    canon = json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
    assert hashlib.sha256(canon).hexdigest() == first["hash"]
    assert json.loads(lines_of(log_dir)[2])["prev"] == first["hash"]
    key = log_dir / "audit.key"
    assert key.stat().st_mode & 0o777 == 0o600


def test_show_tail_and_gap_records(tmp_path: Path) -> None:
    d = tmp_path / "audit"
    with AuditLog.open(d) as log:
        log.append_batch([event(0), event(1)])
        assert log.gap("denials", 12) == 3
        log.lifecycle("policy", "load", {"policy": "no-network", "pid": 42})
    r = audit("show", "--audit-dir", str(d))
    assert r.returncode == 0, r.stderr
    out = r.stdout.splitlines()
    assert len(out) == 6
    assert out[3].split(None, 2)[2] == "gap       GAP 12 denials lost between seq 2 and 3"
    assert out[4].endswith("lifecycle policy load pid=42 policy=no-network")
    r = audit("tail", "-n", "2", "--json", "--audit-dir", str(d))
    recs = [check_audit_record(json.loads(ln), real=False) for ln in r.stdout.splitlines()]
    assert [x["seq"] for x in recs] == [4, 5] and recs[1]["what"] == "stop"
    assert len(read_audit(d, real=False)) == 6
    assert audit("show", "--since", "1h", "--audit-dir", str(d)).stdout.count("\n") == 6
    assert audit("show", "--since", "2999-01-01T00:00:00", "--audit-dir", str(d)).stdout == ""
    assert audit("show", "--from-seq", "3", "--json", "--audit-dir",
                 str(d)).stdout.count("\n") == 3


def test_tail_follow(tmp_path: Path) -> None:
    d = tmp_path / "audit"
    out = tmp_path / "tail.out"
    with AuditLog.open(d, segment_bytes=1500) as log:
        log.append(event(0))
        with out.open("w") as f:
            proc = subprocess.Popen([str(Path(PY).parent / "swatch"), "audit", "tail", "-f",
                                     "-n", "1", "--json", "--audit-dir", str(d)], stdout=f,
                                    stderr=subprocess.PIPE, text=True)
        try:
            def seqs() -> list[int]:
                return [json.loads(ln)["seq"] for ln in out.read_text().splitlines()]

            assert wait_for(lambda: seqs() == [1], timeout=10), out.read_text()
            for i in range(1, 12):  # across several files (segment_bytes)
                log.append(event(i))
            assert wait_for(lambda: seqs() == list(range(1, 13)), timeout=10), seqs()
        finally:
            proc.terminate()
            proc.wait()
    assert len(list(d.glob("records-*.jsonl"))) > 2


# ------------------------------------------------------------------- tampering is caught


def test_edit_one_byte(log_dir: Path) -> None:
    lines = lines_of(log_dir)
    lines[23] = lines[23].replace(b'"pid":1022', b'"pid":1023')
    write_lines(log_dir, lines)
    msg = bad(log_dir)
    assert f"seq 23, {log_dir / SEG0} byte {offset_of(log_dir, 23)}: hash does not match " \
           "the record's contents" in msg


def test_edit_one_byte_of_the_hash(log_dir: Path) -> None:
    lines = lines_of(log_dir)
    h = lines[30][-4:-3]  # the hash's last digit (the line ends in '..."}\n')
    lines[30] = lines[30][:-4] + (b"0" if h != b"0" else b"1") + lines[30][-3:]
    write_lines(log_dir, lines)
    assert f"seq 30, {log_dir / SEG0} byte {offset_of(log_dir, 30)}: hash does not match" \
        in bad(log_dir)


def test_delete_a_record(log_dir: Path) -> None:
    lines = lines_of(log_dir)
    del lines[17]
    write_lines(log_dir, lines)
    assert f"seq 17, {log_dir / SEG0} byte {offset_of(log_dir, 17)}: the record says seq 18 " \
           "where seq 17 was expected" in bad(log_dir)


def test_swap_two_records(log_dir: Path) -> None:
    lines = lines_of(log_dir)
    lines[33], lines[34] = lines[34], lines[33]
    write_lines(log_dir, lines)
    assert f"seq 33, {log_dir / SEG0} byte {offset_of(log_dir, 33)}: the record says seq 34 " \
           "where seq 33 was expected" in bad(log_dir)


def test_truncate(log_dir: Path) -> None:
    lines = lines_of(log_dir)
    write_lines(log_dir, lines[:44])
    msg = bad(log_dir)
    assert "truncated: the log holds 44 records (seq 0..43) but checkpoint #6 covers 51: 7 " \
           "records after seq 43 were cut off" in msg


def test_truncate_with_its_checkpoints_caught_by_a_kept_checkpoint(log_dir: Path,
                                                                   tmp_path: Path) -> None:
    """Cut records and the checkpoints covering them together: the log is a consistent prefix
    again, so only a checkpoint kept elsewhere can tell. The auditor kept the latest one."""
    kept = tmp_path / "kept.checkpoint"
    r = audit("checkpoint", "--audit-dir", str(log_dir))
    kept.write_text(r.stdout)
    assert json.loads(r.stdout)["size"] == 51
    write_lines(log_dir, lines_of(log_dir)[:40])
    cps = (log_dir / "checkpoints.jsonl").read_bytes().splitlines(keepends=True)
    (log_dir / "checkpoints.jsonl").write_bytes(b"".join(cps[:4]))  # sizes 10..40
    assert audit("verify", "--audit-dir", str(log_dir)).returncode == 0
    msg = bad(log_dir, "--checkpoint", str(kept))
    assert "truncated: the log holds 40 records (seq 0..39) but the given checkpoint #1 covers " \
           "51: 11 records after seq 39 were cut off" in msg


def test_checkpoints_cut_after_a_stop(log_dir: Path) -> None:
    """The writer signs right after its stop record: a log that ends in one, unsigned, lost
    checkpoints. The writer refuses it too (else its next checkpoint would sign whatever
    the records now say)."""
    cps = (log_dir / "checkpoints.jsonl").read_bytes().splitlines(keepends=True)
    (log_dir / "checkpoints.jsonl").write_bytes(b"".join(cps[:-1]))  # size 51 gone
    msg = bad(log_dir)
    assert f"seq 50, {log_dir / 'checkpoints.jsonl'}: checkpoints missing: the log ends with a " \
           "writer's stop record, after which the writer always signs, but the last " \
           "checkpoint covers 50 of 51 records" in msg
    with pytest.raises(CorruptLog, match="checkpoints missing"):
        AuditLog.open(log_dir)
    (log_dir / "checkpoints.jsonl").unlink()
    assert "the last checkpoint covers 0 of 51 records" in bad(log_dir)


def test_several_files(tmp_path: Path) -> None:
    d = tmp_path / "audit"
    with AuditLog.open(d, checkpoint_every=7, segment_bytes=3000) as log:
        for i in range(40):
            log.append(event(i))
    files = sorted(d.glob("records-*.jsonl"))
    assert len(files) >= 4
    r = audit("verify", "--audit-dir", str(d))
    assert r.returncode == 0 and f"in {len(files)} file(s)" in r.stdout, r.stderr
    firsts = [int(f.name[8:24]) for f in files]
    # an edit in the third file names that file and the offset in it
    third = files[2].read_bytes().splitlines(keepends=True)
    seq = firsts[2] + 1
    edited = third[1].replace(b'"comm":"agent"', b'"comm":"agenT"')
    assert edited != third[1]
    files[2].write_bytes(b"".join([third[0], edited, *third[2:]]))
    assert f"seq {seq}, {files[2]} byte {len(third[0])}: hash does not match" in bad(d)
    files[2].write_bytes(b"".join(third))
    # a whole file removed
    files[1].unlink()
    assert f"seq {firsts[1]}, {files[2]} byte 0: {files[2].name} should start at seq " \
           f"{firsts[1]} but is named for seq {firsts[2]}" in bad(d)


def test_checkpoint_after_t_seconds(tmp_path: Path) -> None:
    d = tmp_path / "audit"
    with AuditLog.open(d, checkpoint_every=1000, checkpoint_seconds=0.05) as log:
        log.append(event(0))  # (its own tick may already sign, if 0.05 s went by)
        # the serve loop calls tick() now and then; N is far away, so only T can sign
        assert wait_for(lambda: log.tick() or log.unsigned == 0, timeout=5)
        assert [cp.size for cp in log.checkpoints] == [2]
        assert log.tick() is None  # nothing new to sign


def rechain(d: Path, from_seq: int, lines: list[bytes]) -> list[bytes]:
    """What someone without the key can do: recompute every hash and prev from from_seq on."""
    prev = json.loads(lines[from_seq - 1])["hash"]
    out = lines[:from_seq]
    for ln in lines[from_seq:]:
        rec = json.loads(ln)
        del rec["hash"]
        rec["prev"] = prev
        new, prev = seal(rec)
        out.append(new)
    return out


def test_rechain_after_an_edit_without_the_key(log_dir: Path) -> None:
    lines = lines_of(log_dir)
    rec = json.loads(lines[25])
    rec["event"]["target"] = "192.0.2.1:443"  # hide where it connected
    del rec["hash"]
    lines[25] = seal(rec)[0]
    lines = rechain(log_dir, 26, lines)
    write_lines(log_dir, lines)
    # the chain alone is whole again ...
    state = walk(log_dir, None, records_only=True)
    assert state.problem is None and state.records == 51
    # ... but the tree no longer matches what the key signed at size 30
    msg = bad(log_dir)
    assert f"seq 20, {log_dir / SEG0} byte {offset_of(log_dir, 20)}: records 20..29 do not " \
           "match checkpoint #3 (size 30): the tree root differs" in msg


def forge_checkpoints(d: Path, tmp_path: Path) -> None:
    """Sign checkpoints over the (re-chained) log with a key of one's own, as a writer would."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from syscall_watcher.audit.checkpoints import sign

    other = Ed25519PrivateKey.generate()
    state = walk(d, None, records_only=True, collect_leaves=True)
    assert state.leaves is not None
    out = b""
    for line in (d / "checkpoints.jsonl").read_bytes().splitlines():
        size = json.loads(line)["size"]
        last = json.loads(lines_of(d)[size - 1])["hash"]
        cp = sign(other, size, merkle.root_of(state.leaves[:size]).hex(), last, 1)
        out += cp.line()
    (d / "checkpoints.jsonl").write_bytes(out)
    from cryptography.hazmat.primitives import serialization
    (tmp_path / "forged.pub").write_bytes(other.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))


def test_replace_a_checkpoint(log_dir: Path, tmp_path: Path) -> None:
    cps = (log_dir / "checkpoints.jsonl").read_bytes().splitlines(keepends=True)
    # 1. an older checkpoint put in place of a later one: signed, but in the wrong place
    swapped = cps[:2] + [cps[0]] + cps[3:]
    (log_dir / "checkpoints.jsonl").write_bytes(b"".join(swapped))
    msg = bad(log_dir)
    assert f"checkpoints.jsonl byte {len(cps[0]) + len(cps[1])}: checkpoint #3 covers 10 " \
           "records, fewer than checkpoint #2's 20" in msg
    # 2. its root edited: the signature no longer holds
    cp = json.loads(cps[2])
    cp["root"] = "0" * 64
    edited = cps[:2] + [json.dumps(cp, sort_keys=True, separators=(",", ":")).encode() + b"\n"] \
        + cps[3:]
    (log_dir / "checkpoints.jsonl").write_bytes(b"".join(edited))
    assert "checkpoint #3 (size 30): the signature does not verify with key sha256:" \
        in bad(log_dir)


def test_replace_key_and_checkpoints(log_dir: Path, tmp_path: Path) -> None:
    """Edit, re-chain, re-sign every checkpoint with one's own key and put its public half in
    the directory: only the public key kept elsewhere catches it."""
    real_pub = tmp_path / "real.pub"
    assert audit("pubkey", "--audit-dir", str(log_dir), "-o", str(real_pub)).returncode == 0
    lines = lines_of(log_dir)
    rec = json.loads(lines[5])
    rec["event"]["comm"] = "innocent"
    del rec["hash"]
    lines[5] = seal(rec)[0]
    write_lines(log_dir, rechain(log_dir, 6, lines))
    forge_checkpoints(log_dir, tmp_path)
    (log_dir / "audit.pub").write_bytes((tmp_path / "forged.pub").read_bytes())
    assert audit("verify", "--audit-dir", str(log_dir)).returncode == 0  # the dir's own key
    msg = bad(log_dir, "--pubkey", str(real_pub))
    assert "checkpoint #1 (size 10) names key sha256:" in msg
    assert "not the verifying key" in msg


# ------------------------------------------------------------------------ crashes, repair


WRITER = textwrap.dedent("""
    import sys
    from syscall_watcher.audit import AuditLog
    log = AuditLog.open(sys.argv[1], checkpoint_every=50)
    i = 0
    while True:
        seqs = log.append_batch([{"type": "denied", "n": i + j, "pad": "x" * 200}
                                 for j in range(20)])
        i += 20
        print(seqs[-1], flush=True)  # after the write and its fsync
""")


def test_kill9_loses_nothing_fsynced(tmp_path: Path) -> None:
    d = tmp_path / "audit"
    proc = subprocess.Popen([PY, "-c", WRITER, str(d)], stdout=subprocess.PIPE, text=True,
                            cwd=ROOT)
    synced = -1
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            synced = int(line)
            if synced >= 3000:
                break
        # kill it while it writes on: whatever it was doing is cut short
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    assert synced >= 3000
    state = walk(d, load_public(d / "audit.pub"))
    assert state.problem is None, state.problem
    assert state.records > synced
    events = [json.loads(ln) for ln in (d / SEG0).read_bytes().splitlines()
              if ln.endswith(b"}")]
    got = [r["event"]["n"] for r in events if r["kind"] == "event"]
    assert got == list(range(len(got))) and len(got) >= synced  # seq 0 is the start record
    torn = state.torn
    # the next writer cuts an incomplete line (if the kill left one) and says so, in the log
    with AuditLog.open(d) as log:
        first_new = log.next_seq - 1
    recs = [json.loads(ln) for ln in (d / SEG0).read_bytes().splitlines()]
    whats = [r.get("what") for r in recs[state.records:]]
    if torn is not None:
        assert whats[:2] == ["torn_tail", "start"]
        assert recs[state.records]["detail"]["offset"] == torn.offset
    else:
        assert whats[0] == "start"
    assert recs[first_new]["what"] == "start"
    assert walk(d, load_public(d / "audit.pub")).problem is None


def test_torn_last_line_cut_and_logged(log_dir: Path) -> None:
    whole = (log_dir / SEG0).read_bytes()
    last_start = offset_of(log_dir, 50)
    (log_dir / SEG0).write_bytes(whole[:last_start + 40])  # a crash 40 bytes into seq 50
    # verify: the incomplete line is a warning; what is lost is then seen as truncation
    r = audit("verify", "--audit-dir", str(log_dir))
    assert f"ends in an incomplete line at byte {last_start} (40 bytes" in r.stderr
    # here a signed checkpoint covered the lost record: the writer refuses, and says where
    with pytest.raises(CorruptLog) as err:
        AuditLog.open(log_dir)
    assert "truncated: the log holds 50 records" in str(err.value)
    assert "swatch audit repair" in str(err.value)


def test_torn_unsigned_line_cut_at_start(tmp_path: Path) -> None:
    d = tmp_path / "audit"
    log = AuditLog.open(d, checkpoint_every=1000)
    log.append_batch([event(i) for i in range(5)])
    size = (d / SEG0).stat().st_size
    os.write(log._fd, b'{"event":{"type":"denied"')  # the start of a batch, then a crash
    os.close(log._lock_fd)  # the process is gone: its lock with it
    log._lock_fd = -1
    with AuditLog.open(d) as log2:
        assert log2.next_seq == 8  # 0 start, 1..5 events, 6 torn_tail, 7 start
    recs = [json.loads(ln) for ln in (d / SEG0).read_bytes().splitlines()]
    assert recs[6]["what"] == "torn_tail"
    assert recs[6]["detail"] == {"file": SEG0, "offset": size, "bytes_cut": 25, "of": "records"}
    assert audit("verify", "--audit-dir", str(d)).returncode == 0


def test_corrupt_log_refused_then_repaired(log_dir: Path) -> None:
    lines = lines_of(log_dir)
    lines[42] = lines[42].replace(b'"connect"', b'"CONNECT"')
    write_lines(log_dir, lines)
    with pytest.raises(CorruptLog) as err:
        AuditLog.open(log_dir)
    where = f"seq 42, {log_dir / SEG0} byte {offset_of(log_dir, 42)}"
    assert where in str(err.value) and "nothing was appended" in str(err.value)
    assert f"swatch audit repair --audit-dir {log_dir}" in str(err.value)
    assert lines_of(log_dir) == lines  # untouched
    r = audit("repair", "--audit-dir", str(log_dir))
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith(f"repaired: {where}: hash does not match")
    assert "kept 42 records; set aside 9 records and 2 checkpoints in" in r.stdout
    qdir = Path(r.stdout.split(" in ")[-1].split(";")[0])
    assert (qdir / SEG0).read_bytes() == b"".join(lines[42:])
    assert audit("verify", "--audit-dir", str(log_dir)).returncode == 0
    recs = [json.loads(ln) for ln in lines_of(log_dir)]
    assert recs[42]["what"] == "repair" and recs[42]["detail"]["records_set_aside"] == 9
    assert recs[41] == json.loads(lines[41])


# ----------------------------------------------------------------------------- proofs


def test_prove_and_check_proof(log_dir: Path, tmp_path: Path) -> None:
    pub = tmp_path / "log.pub"
    assert audit("pubkey", "--audit-dir", str(log_dir), "-o", str(pub)).returncode == 0
    proof_file = tmp_path / "proof.json"
    r = audit("prove", "37", "--audit-dir", str(log_dir), "-o", str(proof_file))
    assert r.returncode == 0, r.stderr
    proof = json.loads(proof_file.read_text())
    assert proof["tree_size"] == 51 and len(proof["path"]) == 6
    assert json.loads(proof["record"])["event"] == event(36)
    # a third party: the proof, the public key, nothing else of the log
    r = audit("check-proof", str(proof_file), "--pubkey", str(pub))
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("ok: seq 37 (denied action=blocked comm=agent op=connect "
                               "pid=1036 target=10.0.0.36:443) is in the log of 51 records")
    # against their own copy of an earlier checkpoint
    kept = tmp_path / "cp30"
    kept.write_bytes((log_dir / "checkpoints.jsonl").read_bytes().splitlines(keepends=True)[2])
    r = audit("prove", "27", "--size", "30", "--audit-dir", str(log_dir))
    (tmp_path / "p27").write_text(r.stdout)
    assert audit("check-proof", str(tmp_path / "p27"), "--pubkey", str(pub), "--checkpoint",
                 str(kept)).returncode == 0

    def refused(p: dict, why: str, *extra: str) -> None:  # type: ignore[type-arg]
        f = tmp_path / "tampered.json"
        f.write_text(json.dumps(p))
        r = audit("check-proof", str(f), "--pubkey", str(pub), *extra)
        assert r.returncode == 1 and r.stderr.count("\n") == 1, r.stderr
        assert why in r.stderr, r.stderr

    rec = json.loads(proof["record"])
    rec["event"]["target"] = "10.9.9.9:443"
    del rec["hash"]
    resealed = seal(rec)[0].rstrip(b"\n").decode()
    refused({**proof, "record": resealed}, "the path does not lead to the checkpoint's root")
    refused({**proof, "record": proof["record"].replace("1036", "1037")},
            "hash does not match the record's contents")
    path = list(proof["path"])
    path[2] = path[2][:-1] + ("0" if path[2][-1] != "0" else "1")
    refused({**proof, "path": path}, "the path does not lead to the checkpoint's root")
    refused({**proof, "path": proof["path"][:-1]}, "the path has the wrong length")
    refused({**proof, "seq": 36}, "the record says seq 37, the proof seq 36")
    refused(proof, "the proof is for a tree of 51 records, the checkpoint covers 30",
            "--checkpoint", str(kept))
    cp = dict(proof["checkpoint"], root="1" * 64)
    refused({**proof, "checkpoint": cp}, "the checkpoint (size 51) is not signed by key")


# ------------------------------------------------------------------------------ bad input


def one_error_line(r: subprocess.CompletedProcess) -> str:  # type: ignore[type-arg]
    assert r.returncode != 0
    assert r.stderr.count("\n") == 1 and r.stderr.startswith("swatch: error: "), r.stderr
    return r.stderr


def test_unwritable_audit_dir(tmp_path: Path) -> None:
    ro = tmp_path / "ro"
    ro.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(ro)], check=True)
    try:
        msg = one_error_line(audit("init", "--audit-dir", str(ro / "audit")))
        assert f"{ro / 'audit'}: cannot create the audit directory: Read-only file system" \
            in msg
        with pytest.raises(AuditError, match="cannot create the audit directory"):
            AuditLog.open(ro / "audit")
    finally:
        subprocess.run(["umount", str(ro)], check=True)
    f = tmp_path / "file"
    f.write_text("")
    msg = one_error_line(audit("init", "--audit-dir", str(f / "audit")))
    assert "cannot create the audit directory: Not a directory" in msg


def test_init_then_empty_log_verifies(tmp_path: Path) -> None:
    d = tmp_path / "audit"
    r = audit("init", "--audit-dir", str(d))
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("-----BEGIN PUBLIC KEY-----")
    assert f"signing key created {d / 'audit.key'} (sha256:" in r.stderr
    assert (d / "audit.key").stat().st_mode & 0o777 == 0o600
    assert d.stat().st_mode & 0o777 == 0o700
    pem = r.stdout
    r = audit("verify", "--audit-dir", str(d))
    assert r.returncode == 0 and r.stdout.startswith(f"ok: no records yet in {d}"), r.stderr
    again = audit("init", "--audit-dir", str(d))  # the same key, not a new one
    assert again.stdout == pem and "signing key exists:" in again.stderr


def test_key_with_wrong_permissions(log_dir: Path) -> None:
    key = log_dir / "audit.key"
    key.chmod(0o644)
    with pytest.raises(AuditError) as err:
        AuditLog.open(log_dir)
    assert str(err.value) == (f"{key}: the signing key has mode 0644, readable or writable by "
                              f"others; it must be 0600 (chmod 600 {key})")
    assert "mode 0644" in one_error_line(audit("repair", "--audit-dir", str(log_dir)))
    assert "mode 0644" in one_error_line(audit("init", "--audit-dir", str(log_dir)))


def test_bad_input_one_line(log_dir: Path, tmp_path: Path) -> None:
    assert "no audit log here" in one_error_line(audit("show", "--audit-dir",
                                                       str(tmp_path / "none")))
    assert "no public key" in one_error_line(audit("verify", "--audit-dir",
                                                   str(tmp_path / "none")))
    assert "not a time" in one_error_line(audit("show", "--since", "yesterday-ish",
                                                "--audit-dir", str(log_dir)))
    assert "no signed checkpoint covers seq 999 yet (the last covers 51 records" in \
        one_error_line(audit("prove", "999", "--audit-dir", str(log_dir)))
    (tmp_path / "junk").write_text("not json")
    assert "not JSON" in one_error_line(audit("check-proof", str(tmp_path / "junk"), "--pubkey",
                                              str(log_dir / "audit.pub")))
    assert "not a PEM key" in one_error_line(audit("verify", "--audit-dir", str(log_dir),
                                                   "--pubkey", str(tmp_path / "junk")))
    # a second writer while one holds the log
    with AuditLog.open(log_dir):
        with pytest.raises(AuditError, match=f"another process \\(pid {os.getpid()}\\) is "
                           "writing this audit log"):
            AuditLog.open(log_dir)


# ------------------------------------------------------------ real denials, from the kernel


def test_real_denials_logged_verified_and_proven(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """A no-network policy on a real process: its five socket() calls are denied by the
    kernel; the denials, read from the enforcer's ring buffer as `serve` will read them, go
    into the log as given, with the policy's load and unload; the log verifies and a third
    party checks the proof of one denial with the public key alone."""
    from test_policy_enforce import Gated

    from syscall_watcher.policy.denials import read_denials
    from syscall_watcher.policy.enforcer import PinnedPolicy

    monkeypatch.setenv("SWATCH_POLICY_TIER", "cgroup")
    ppin = new_pin_dir("policy")
    d = tmp_path / "audit"
    t = Gated([PY, "-B", "-c", "import socket, sys\nsys.stdin.readline()\nfor i in range(5):\n"
               "    try:\n        socket.socket()\n    except OSError:\n        pass\n"])
    try:
        r = swatch("policy-load", "--pid", str(t.pid), "--policy", "no-network", "--pin-dir",
                   str(ppin))
        assert r.returncode == 0, r.stderr
        with AuditLog.open(d, checkpoint_every=3) as log:
            log.lifecycle("policy", "load", {"policy": "no-network", "pid": t.pid})
            session = PinnedPolicy.open(ppin)
            denials: list[dict] = []  # type: ignore[type-arg]
            try:
                assert t.go()[0] == 0

                def five() -> bool:
                    batch = read_denials(session)  # what is in the ring now, taken out
                    if batch:
                        log.append_batch(batch)  # one batch: one write, one fsync
                        denials.extend(batch)
                    return len(denials) >= 5

                assert wait_for(five, timeout=10), denials
                lost = session.counts().dropped
                if lost:
                    log.gap("denials", lost)
            finally:
                session.close()
            r = swatch("policy-unload", "--pin-dir", str(ppin))
            assert r.returncode == 0, r.stderr
            log.lifecycle("policy", "unload", {"policy": "no-network"})
    finally:
        t.proc.kill()
        t.proc.wait()
        swatch("policy-unload", "--pin-dir", str(ppin))
    assert len(denials) == 5 and not lost
    assert all(x["op"] == "socket" and x["pid"] == t.pid and x["action"] == "blocked"
               for x in denials)
    recs = read_audit(d)  # each validated: the envelope, and each denial as an output record
    assert [r["kind"] for r in recs] == ["log", "lifecycle"] + ["event"] * 5 + \
        ["lifecycle", "log"]
    assert [r["event"] for r in recs[2:7]] == denials  # kept exactly as the stream gave them
    pub = tmp_path / "log.pub"
    assert audit("pubkey", "--audit-dir", str(d), "-o", str(pub)).returncode == 0
    r = audit("verify", "--audit-dir", str(d), "--pubkey", str(pub), "--strict")
    assert r.returncode == 0 and r.stdout.startswith("ok: 9 records (seq 0..8)"), r.stderr
    r = audit("prove", "4", "--audit-dir", str(d))
    (tmp_path / "proof").write_text(r.stdout)
    r = audit("check-proof", str(tmp_path / "proof"), "--pubkey", str(pub), "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["event"] == denials[2]
    shown = audit("show", "--audit-dir", str(d)).stdout.splitlines()
    assert " event     denied action=blocked cgroup_id=" in shown[4]
    assert f"op=socket pid={t.pid} policy=no-network" in shown[4]
    assert "target=AF_INET SOCK_STREAM" in shown[4]
