"""`swatch audit ...`: read, verify, prove and repair the audit log `swatch serve` writes.
Thin: parse, call syscall_watcher.audit, print."""

from __future__ import annotations

import json as jsonlib
import re
import sys
import time
from collections import deque
from datetime import datetime
from pathlib import Path
from typing import Any, Optional

import typer

from syscall_watcher.audit import DEFAULT_DIR
from syscall_watcher.audit.records import AuditError, describe
from syscall_watcher.cli.errors import user_errors
from syscall_watcher.text import printable

audit_app = typer.Typer(
    name="audit",
    no_args_is_help=True, rich_markup_mode=None,
    help="The tamper-evident audit log: verify it, show it, prove a record is in it.",
    context_settings={"help_option_names": ["-h", "--help"]})

AuditDir = typer.Option(DEFAULT_DIR, "--audit-dir", "-d", envvar="SWATCH_AUDIT_DIR",
                        show_envvar=True, help="The audit log's directory (the same as "
                        "`swatch serve`'s).")
PubKey = typer.Option(None, "--pubkey", "-k", metavar="FILE",
                      help="The public key to verify signatures with (PEM; `swatch audit "
                      "pubkey` exports it). Default: audit.pub in the audit directory, which "
                      "proves nothing against someone who could rewrite that directory.")
Json = typer.Option(False, "--json", help="One record per line, exactly as stored.")

_RELATIVE = re.compile(r"^(\d+(?:\.\d+)?)([smhd])$")


def _since_ns(since: Optional[str]) -> Optional[int]:
    """--since: "10m", "2h", "1d", "30s" ago, or an ISO 8601 time (local unless it says)."""
    if since is None:
        return None
    m = _RELATIVE.match(since.strip())
    if m:
        secs = float(m.group(1)) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[m.group(2)]
        return time.time_ns() - int(secs * 1e9)
    try:
        when = datetime.fromisoformat(since.strip())
    except ValueError:
        raise AuditError(f"--since {since!r}: not a time (use e.g. 10m, 2h, 1d or "
                         "2026-01-31T12:00:00)") from None
    return int(when.timestamp() * 1e9)


def _public(audit_dir: Path, pubkey: Optional[Path]) -> tuple[Any, str]:
    """(the verifying key, where it came from)."""
    path = pubkey if pubkey is not None else audit_dir / "audit.pub"
    if pubkey is None and not path.exists():
        raise AuditError(f"{path}: no public key (pass --pubkey FILE, or is {audit_dir} "
                         "an audit log?)")
    from syscall_watcher.audit.checkpoints import load_public

    return load_public(path), str(path)


def _checkpoints_from(path: Path) -> list[Any]:
    from syscall_watcher.audit.checkpoints import parse_checkpoint

    try:
        text = sys.stdin.read() if str(path) == "-" else path.read_text()
    except OSError as err:
        raise AuditError(f"{path}: {err.strerror}") from None
    found = []
    for n, line in enumerate(text.splitlines(), 1):
        if line.strip():
            try:
                found.append(parse_checkpoint(line))
            except AuditError as err:
                raise AuditError(f"{path} line {n}: {err}") from None
    if not found:
        raise AuditError(f"{path}: no checkpoint in it")
    return found


def _human(rec: dict[str, Any]) -> str:
    t = rec.get("time_ns")
    when = "?"
    if isinstance(t, int):
        when = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t // 10**9)) + \
            f".{t // 1_000_000 % 1000:03d}Z"
    if rec.get("kind") == "unreadable":
        return (f"{'?':>8} {'?':24} unreadable line at {rec['file']} byte {rec['offset']}"
                + ("" if rec.get("complete") else " (incomplete: a crash mid-write)"))
    return (f"{rec.get('seq', '?'):>8} {when:24} {rec.get('kind', '?'):<9} "
            f"{printable(describe(rec))}")


def _print_record(rec: dict[str, Any], json: bool) -> None:
    if json:
        typer.echo(jsonlib.dumps(rec, separators=(",", ":")))
    else:
        typer.echo(_human(rec))


@audit_app.command()
@user_errors
def init(audit_dir: Path = AuditDir) -> None:
    """Create the audit directory and its signing key (0600); print the public key."""
    from syscall_watcher.audit.checkpoints import (
        KEY_FILE,
        PUB_FILE,
        fingerprint,
        load_or_create_key,
    )
    from syscall_watcher.audit.log import prepare_dir

    prepare_dir(audit_dir)
    key, created = load_or_create_key(audit_dir / KEY_FILE, audit_dir / PUB_FILE)
    word = "created" if created else "exists:"
    typer.echo(f"signing key {word} {audit_dir / KEY_FILE} ({fingerprint(key.public_key())}); "
               f"public key {audit_dir / PUB_FILE}:", err=True)
    typer.echo((audit_dir / PUB_FILE).read_text(), nl=False)


@audit_app.command()
@user_errors
def pubkey(audit_dir: Path = AuditDir,
           output: Optional[Path] = typer.Option(None, "--output", "-o",
                                                 help="Write it to FILE instead.")) -> None:
    """Print (export) the public key that verifies the log's checkpoints."""
    from syscall_watcher.audit.checkpoints import fingerprint, public_pem

    key, _ = _public(audit_dir, None)
    pem = public_pem(key).decode()
    if output is not None:
        output.write_text(pem)
        typer.echo(f"{fingerprint(key)} written to {output}", err=True)
    else:
        typer.echo(pem, nl=False)


@audit_app.command()
@user_errors
def checkpoint(audit_dir: Path = AuditDir) -> None:
    """Print the latest signed checkpoint (one JSON line): keep it elsewhere, and give it back
    to `verify --checkpoint` to catch a log cut short or rewritten since."""
    from syscall_watcher.audit.verify import LogState, read_checkpoints

    state = LogState(audit_dir=audit_dir)
    read_checkpoints(audit_dir, None, state)
    if state.problem is not None:
        raise AuditError(str(state.problem))
    if not state.checkpoints:
        raise AuditError(f"{audit_dir}: no checkpoint signed yet")
    typer.echo(state.checkpoints[-1].line().decode(), nl=False)


@audit_app.command()
@user_errors
def verify(audit_dir: Path = AuditDir, pubkey: Optional[Path] = PubKey,
           checkpoint: Optional[list[Path]] = typer.Option(
               None, "--checkpoint", "-c", metavar="FILE",
               help="Checkpoints kept elsewhere (lines of `swatch audit checkpoint`; - for "
               "stdin); the log must still hold and match them. Repeatable."),
           strict: bool = typer.Option(False, "--strict", help="Also check every record is "
                                       "in the canonical encoding (about twice as slow)."),
           json: bool = typer.Option(False, "--json", help="The result as one JSON object.")
           ) -> None:
    """Check the hash chain, the Merkle tree against every signed checkpoint, the signatures,
    and truncation. Names the first bad record (seq, file, byte offset); exit 1 if any."""
    from syscall_watcher.audit import walk

    public, key_from = _public(audit_dir, pubkey)
    trusted = [cp for path in checkpoint or [] for cp in _checkpoints_from(path)]
    state = walk(audit_dir, public, trusted=trusted, strict=strict)
    last = state.checkpoints[-1] if state.checkpoints else None
    result = {
        "ok": state.problem is None, "records": state.records, "files": len(state.files),
        "checkpoints": len(state.checkpoints), "key": state.key, "key_file": key_from,
        "signed_records": last.size if last else 0, "unsigned_records": state.unsigned,
        "given_checkpoints_matched": state.trusted_checked,
        "torn_tail": ({"file": str(state.torn.file), "offset": state.torn.offset,
                       "bytes": state.torn.length} if state.torn else None),
        "problem": None if state.problem is None else {
            "what": state.problem.what, "seq": state.problem.seq,
            "file": str(state.problem.file) if state.problem.file else None,
            "offset": state.problem.offset, "kind": state.problem.kind},
    }
    if json:
        typer.echo(jsonlib.dumps(result))
    if state.torn is not None and not json:
        typer.echo(f"swatch: warning: {state.torn.file} ends in an incomplete line at byte "
                   f"{state.torn.offset} ({state.torn.length} bytes; a crash mid-write): the "
                   "writer cuts it at its next start, or `swatch audit repair` now", err=True)
    if state.problem is not None:
        if not json:
            raise AuditError(f"the audit log does not verify: {state.problem}")
        raise typer.Exit(1)
    if json:
        return
    tail = (f"; {state.unsigned} records after the last checkpoint not yet signed"
            if state.unsigned else "")
    given = (f"; {state.trusted_checked} given checkpoint(s) matched" if trusted else "")
    if state.records == 0:
        typer.echo(f"ok: no records yet in {audit_dir} (key {state.key}, {key_from})")
        return
    typer.echo(f"ok: {state.records} records (seq 0..{state.records - 1}) in "
               f"{len(state.files)} file(s): chain intact, {len(state.checkpoints)} checkpoints "
               f"signed by {state.key} ({key_from}) match the tree{given}{tail}")
    if pubkey is None:
        typer.echo("swatch: note: verified with the key in the audit directory itself; pass "
                   "--pubkey with a copy kept elsewhere to rule out a replaced key", err=True)


@audit_app.command()
@user_errors
def show(audit_dir: Path = AuditDir,
         since: Optional[str] = typer.Option(None, "--since", metavar="TIME",
                                             help="Only records from then on: 10m, 2h, 1d "
                                             "ago or an ISO 8601 time."),
         seq: int = typer.Option(0, "--from-seq", min=0, help="Only records from this seq on."),
         json: bool = Json) -> None:
    """Print the records (one line each), without checking them (that is `verify`)."""
    from syscall_watcher.audit.verify import iter_records

    for rec in iter_records(audit_dir, _since_ns(since), seq):
        _print_record(rec, json)


@audit_app.command()
@user_errors
def tail(audit_dir: Path = AuditDir,
         lines: int = typer.Option(10, "--lines", "-n", min=0, help="How many records."),
         since: Optional[str] = typer.Option(None, "--since", metavar="TIME",
                                             help="Only records from then on."),
         follow: bool = typer.Option(False, "--follow", "-f",
                                     help="Keep printing records as they are appended."),
         json: bool = Json) -> None:
    """Print the last records; with --follow, the new ones as they come (Ctrl-C stops)."""
    from syscall_watcher.audit.verify import iter_records

    since_ns = _since_ns(since)
    last: deque[dict[str, Any]] = deque(maxlen=lines)
    next_seq = 0
    for rec in iter_records(audit_dir):
        if isinstance(rec.get("seq"), int):
            next_seq = rec["seq"] + 1
        t = rec.get("time_ns")
        if since_ns is None or not isinstance(t, int) or t >= since_ns:
            last.append(rec)
    for rec in last:
        _print_record(rec, json)
    if not follow:
        return
    from syscall_watcher.audit.verify import Follower

    follower = Follower(audit_dir, next_seq)
    while True:
        for rec in follower.poll():
            _print_record(rec, json)
        sys.stdout.flush()
        time.sleep(0.5)


@audit_app.command()
@user_errors
def prove(seq: int = typer.Argument(..., min=0, help="The record's sequence number."),
          audit_dir: Path = AuditDir, pubkey: Optional[Path] = PubKey,
          size: Optional[int] = typer.Option(None, "--size", min=1,
                                             help="Prove against the checkpoint of exactly "
                                             "this many records (default: the latest)."),
          output: Optional[Path] = typer.Option(None, "--output", "-o",
                                                help="Write the proof to FILE.")) -> None:
    """Print an inclusion proof for record SEQ (JSON): with the public key alone, anyone can
    check it (`swatch audit check-proof`)."""
    from syscall_watcher.audit import prove as make_proof

    public, _ = _public(audit_dir, pubkey)
    proof = make_proof(audit_dir, seq, public, size)
    text = jsonlib.dumps(proof, indent=1) + "\n"
    if output is not None:
        output.write_text(text)
        typer.echo(f"proof of seq {seq} in the log of {proof['tree_size']} records written to "
                   f"{output}", err=True)
    else:
        typer.echo(text, nl=False)


@audit_app.command("check-proof")
@user_errors
def check_proof_cmd(
        proof: Path = typer.Argument(..., metavar="PROOF", help="The proof file (- for stdin)."),
        pubkey: Path = typer.Option(..., "--pubkey", "-k", metavar="FILE",
                                    help="The log's public key (PEM)."),
        checkpoint: Optional[Path] = typer.Option(
            None, "--checkpoint", "-c", metavar="FILE",
            help="Your own copy of the checkpoint to check against (else the proof's own, "
            "whose signature is checked)."),
        json: bool = typer.Option(False, "--json", help="Print the proven record as JSON.")
) -> None:
    """Check an inclusion proof with only the public key (and a checkpoint): exit 0 when the
    record is proven to be in the signed log."""
    from syscall_watcher.audit import check_proof

    try:
        text = sys.stdin.read() if str(proof) == "-" else proof.read_text()
    except OSError as err:
        raise AuditError(f"{proof}: {err.strerror}") from None
    try:
        data = jsonlib.loads(text)
    except ValueError:
        raise AuditError(f"{proof}: not JSON (a proof is what `swatch audit prove` prints)") \
            from None
    from syscall_watcher.audit.checkpoints import load_public

    public = load_public(pubkey)
    cps = _checkpoints_from(checkpoint) if checkpoint is not None else [None]
    rec, cp = check_proof(data, public, cps[-1])
    if json:
        typer.echo(jsonlib.dumps(rec, separators=(",", ":")))
        return
    signed = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(cp.time_ns / 1e9))
    typer.echo(f"ok: seq {rec['seq']} ({printable(describe(rec))}) is in the log of {cp.size} "
               f"records whose root {cp.root[:16]}... {cp.key} signed at {signed}")


@audit_app.command()
@user_errors
def repair(audit_dir: Path = AuditDir,
           key: Optional[Path] = typer.Option(None, "--key", metavar="FILE",
                                              help="The signing key (default: audit.key in "
                                              "the audit directory).")) -> None:
    """Cut a corrupt log back to what verifies; move the rest to quarantine/ (nothing is
    deleted) and record the repair as a signed entry."""
    from syscall_watcher.audit.repair import repair as do_repair

    report = do_repair(audit_dir, key)
    if report.problem is None:
        typer.echo(f"nothing to repair: {audit_dir} verifies (an incomplete last line, if any, "
                   "was cut and logged)")
        return
    typer.echo(f"repaired: {report.problem}\n  kept {report.kept} records; set aside "
               f"{report.records_moved} records and {report.checkpoints_moved} checkpoints in "
               f"{report.quarantine}; logged as seq {report.repair_seq}")
