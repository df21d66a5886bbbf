"""Every command has help; every bad input is one line, exit 1, and nothing loaded."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from conftest import SWATCH, swatch
from syscall_watcher.cli import app

COMMANDS = ["load", "watch", "unload", "status", "run", "summary", "containers", "profiles", "version"]


def top_level_commands() -> dict:  # type: ignore[type-arg]
    """`swatch NAME` for every command that is not a group (policy, audit), as click built it
    (each module's commands are built when looked up: cli/groups.py, Lazy)."""
    group = typer.main.get_command(app)
    ctx = typer.Context(group)
    return {name: cmd for name in group.list_commands(ctx)
            if not hasattr(cmd := group.get_command(ctx, name), "list_commands")}


def test_every_command_has_help() -> None:
    runner = CliRunner()
    listed = runner.invoke(app, ["--help"]).output
    commands = top_level_commands()
    for name, cmd in commands.items():
        assert name in listed
        res = runner.invoke(app, [name, "--help"])
        assert res.exit_code == 0, name
        assert (cmd.callback.__doc__ or "").strip(), f"{name} has no docstring"
        assert cmd.callback.__doc__.strip().split("\n")[0][:30] in res.output.replace("\n", " ")
    assert set(commands) >= set(COMMANDS)


def test_help_flags_have_no_value_placeholder() -> None:
    """A flag takes no value: `--json`, not `--json <bool>` (typer's rich panels print one)."""
    runner = CliRunner()
    top = runner.invoke(app, ["--help"]).output
    assert "--install-completion" in top and "--show-completion" in top
    for name in top_level_commands():
        out = runner.invoke(app, [name, "--help"]).output
        assert "<bool>" not in out, f"swatch {name} --help:\n{out}"
    assert "  --json " in runner.invoke(app, ["run", "--help"]).output


def _one_line_error(proc: subprocess.CompletedProcess, *needles: str) -> None:  # type: ignore[type-arg]
    assert proc.returncode == 1, (proc.returncode, proc.stdout, proc.stderr)
    err = proc.stderr.strip()
    assert err.count("\n") == 0, err
    assert err.startswith("swatch: error: ")
    assert "Traceback" not in err
    for n in needles:
        assert n in err, err


@pytest.mark.parametrize("args,needles", [
    (["load", "--pid", "999999999"], ["no such process: 999999999"]),
    (["load", "--pid", "1", "--filter", "bogus"],
     ["unknown filter profile 'bogus'", "minimal, network, file, default, exec, all"]),
    (["load", "--pid", "1", "--comm", "x"], ["choose one target"]),
    (["load", "--uid", "no-such-user-xyz"], ["no such user"]),
    (["load", "--comm", "much-too-long-command-name"], ["1 to 15 bytes"]),
    (["load", "--pid", "1", "--ring-size", "1000"], ["power of two"]),
    (["watch"], ["nothing is loaded"]),
    (["run", "--", "/no/such/program"], ["command not found"]),
    (["run", "--filter", "nope", "--", "true"], ["unknown filter profile"]),
])
def test_bad_input(args: list[str], needles: list[str], pin_dir: Path) -> None:
    _one_line_error(swatch(*args, "--pin-dir", str(pin_dir)) if args[0] != "run"
                    else swatch(*args), *needles)
    assert not pin_dir.exists()


def test_not_root() -> None:
    proc = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                           SWATCH, "load", "--pid", "1"], capture_output=True, text=True)
    _one_line_error(proc, "must run as root")


def test_no_btf(pin_dir: Path) -> None:
    # Mocked: every kernel here has BTF, so point swatch at a path that does not exist.
    proc = swatch("load", "--pid", "1", "--pin-dir", str(pin_dir),
                  env={"SWATCH_BTF_PATH": "/nonexistent/vmlinux"})
    _one_line_error(proc, "no BTF", "CONFIG_DEBUG_INFO_BTF")
    assert not pin_dir.exists()


def test_run_without_command() -> None:
    _one_line_error(swatch("run"), "no command given")


def test_status_nothing_loaded(pin_dir: Path) -> None:
    proc = swatch("status", "--pin-dir", str(pin_dir))
    assert proc.returncode == 0 and "nothing loaded" in proc.stdout


def test_profiles_lists_all() -> None:
    out = swatch("profiles", check=True).stdout
    for name in ("minimal", "network", "file", "default", "all"):
        assert out.count(f"\n{name} ") + out.startswith(f"{name} ") == 1
