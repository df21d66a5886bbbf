"""`swatch`'s start-up work: option values parsed without pydantic exactly as typer parses them
(cli/coerce.py), and each command module imported only when one of its commands runs
(cli/groups.py, Lazy) — so `swatch run` imports neither pydantic, the audit log nor the policy
compiler, and every command, its help and its errors stay what they were."""

from __future__ import annotations

import importlib
import json
import pkgutil
import shutil
import subprocess
import sys
from enum import Enum
from pathlib import Path
from typing import Any, get_args, get_origin

import pytest
import typer
import typer.core
import yaml
from conftest import SWATCH

import syscall_watcher.cli as cli_pkg
from syscall_watcher.cli import app
from syscall_watcher.cli.app import SwatchGroup
from syscall_watcher.cli.coerce import plain_conversion
from syscall_watcher.kernel import syscalls

try:
    from typer._click.exceptions import BadParameter
except ImportError:  # pragma: no cover - older typer on the system click
    from click.exceptions import BadParameter  # type: ignore[no-redef]

STOCK = getattr(typer.core.build_runtime_param, "stock", None)
pytestmark = pytest.mark.skipif(STOCK is None, reason="this typer parses without pydantic")

# What a user may type, per type: the plain spellings (the plain conversion must answer them),
# then odd ones and mistakes (typer's adapter answers; both must agree on all of them).
PLAIN = {
    int: ["0", "5", "05", "-3", "65536", "123456789012345678", 7, 0],
    float: ["1", "1.5", "0.1", "-0", "-2.25", "300", 5.0],
    str: ["x", "", "-", "a b", "é", "--json"],
    Path: ["a", "/tmp", "-", "a//b/", "./x", "/nonexistent/dir/file", Path("y")],
    bool: [True, False],
}
ODD = {
    int: ["+5", " 5", "5 ", "1_000", "0x10", "1.5", "1.0", "", "abc", "-", "1e3",
          "1234567890123456789", "99999999999999999999999", 2.0, True],
    float: [".5", "5.", "1e3", "nan", "inf", "-inf", "1_0.5", " 2", "", "abc", 3, True],
    str: [5, b"bytes"],
    Path: ["", 5],
    bool: ["true", "1", "no", ""],
}


def _params() -> list[tuple[str, Any, Any]]:
    """(command path, click parameter, context) for every parameter swatch declares."""
    root = typer.main.get_command(app)
    out = []

    def walk(group: Any, ctx: Any, path: str) -> None:
        for name in group.list_commands(ctx):
            cmd = group.get_command(ctx, name)
            sub_ctx = typer.Context(cmd, info_name=name, parent=ctx)
            out.extend((f"{path} {name}", p, sub_ctx) for p in cmd.params
                       if hasattr(p, "type_descriptor"))
            if hasattr(cmd, "list_commands"):
                walk(cmd, sub_ctx, f"{path} {name}")

    root_ctx = typer.Context(root, info_name="swatch")
    out.extend(("swatch", p, root_ctx) for p in root.params if hasattr(p, "type_descriptor"))
    walk(root, root_ctx, "swatch")
    return out


def _outcome(runtime: Any, value: Any, param: Any, ctx: Any) -> tuple[Any, ...]:
    try:
        got = runtime.coerce(value, param=param, ctx=ctx)
    except BadParameter as err:
        return ("error", err.format_message())
    # repr: nan is not equal to itself; the types too (1 and 1.0, a str and a Path)
    return ("value", type(got), repr(got),
            [type(x) for x in got] if isinstance(got, list) else None)


def _samples(annotation: Any) -> tuple[type, list[Any], list[Any]]:
    leaf = get_args(annotation)[0] if get_origin(annotation) is list else annotation
    kind = Enum if isinstance(leaf, type) and issubclass(leaf, Enum) else leaf
    if kind is Enum:
        plain: list[Any] = [m.value for m in leaf] + list(leaf)
        odd: list[Any] = [m.value.upper() for m in leaf] + ["", "nope"]
    else:
        plain, odd = PLAIN[kind], ODD[kind]
    if get_origin(annotation) is list:
        plain = [(v,) for v in plain] + [tuple(plain[:3]), plain[0]]
        odd = [(v,) for v in odd] + [(plain[0], odd[0]), "not-a-list"]
    return leaf, plain, odd


def test_every_parameter_parses_as_typer_parses_it() -> None:
    """For every parameter of every command: the same value (and type) or the same error
    message as typer's own pydantic adapter, on plain spellings and on odd ones."""
    params = _params()
    kinds = set()
    for where, param, ctx in params:
        desc = param.type_descriptor
        leaf, plain, odd = _samples(desc.annotation)
        kinds.add(leaf if not issubclass(leaf, Enum) else Enum)
        convert = plain_conversion(desc.annotation, desc.parameter_info)
        assert convert is not None, f"{where} {param.name}: {desc.annotation} goes to pydantic"
        ours = typer.core.build_runtime_param(desc)
        stock = STOCK(desc)
        for value in plain + odd:
            expected = _outcome(stock, value, param, ctx)
            assert _outcome(ours, value, param, ctx) == expected, (where, param.name, value)
        for value in plain:  # answered without typer's adapter
            if _outcome(stock, value, param, ctx)[0] == "value" and not (
                    isinstance(value, str) and param.multiple):
                convert(value, param, ctx)
    assert kinds == {int, float, str, Path, bool, Enum}, kinds  # the corpus covers them all
    assert len(params) > 100


def _modules_after(*argv: str) -> tuple[subprocess.CompletedProcess[str], set[str]]:
    """Run `swatch ARGV` through its entry point; the modules it imported, from its exit."""
    code = ("import atexit, json, sys\n"
            "atexit.register(lambda: print(json.dumps(sorted(sys.modules)), file=sys.stderr))\n"
            "from syscall_watcher.cli import main\n"
            f"sys.argv = ['swatch', *{list(argv)!r}]\n"
            "main()\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    *lines, modules = proc.stderr.rstrip("\n").split("\n")
    proc.stderr = "\n".join(lines) + ("\n" if lines else "")
    return proc, set(json.loads(modules))


NOT_FOR_RUN = ("pydantic", "syscall_watcher.cli.audit", "syscall_watcher.cli.policy",
               "syscall_watcher.cli.detect", "syscall_watcher.cli.serve",
               "syscall_watcher.audit.records", "syscall_watcher.policy.language",
               "syscall_watcher.sandbox.landlock", "syscall_watcher.detect",
               "syscall_watcher.tls.probes",
               "yaml")  # the data files come from their JSON twins (`make venv` writes them)


def test_run_imports_only_what_it_uses() -> None:
    """`swatch run` stopped at its first check (before the kernel): its options parsed, no
    pydantic, none of the other commands' modules."""
    proc, modules = _modules_after("run", "--json", "--filter", "all", "-o", "-",
                                   "--max-pids", "4096", "-s", "64", "-e", "openat",
                                   "--color", "never", "--", "/no/such/program")
    assert proc.returncode == 1
    assert proc.stderr == "swatch: error: command not found or not executable: " \
        "/no/such/program\n", proc.stderr
    assert "syscall_watcher.cli.trace" in modules
    assert not [m for m in NOT_FOR_RUN if m in modules], sorted(modules)


def test_traced_run_imports_only_what_it_uses() -> None:
    """A whole `swatch run` against the kernel (events, the summary) imports no more."""
    proc, modules = _modules_after("run", "--json", "-o", "-", "--", "/bin/true")
    assert proc.returncode == 0, proc.stderr
    records = [json.loads(line) for line in proc.stdout.splitlines()]
    assert any(r.get("type") == "exec" for r in records), proc.stdout[:500]
    assert "syscall_watcher.trace.summary" in modules
    assert not [m for m in NOT_FOR_RUN if m in modules], sorted(modules)


def test_help_builds_every_module() -> None:
    """`swatch --help` lists every command: it imports each module (and so does completion)."""
    proc, modules = _modules_after("--help")
    assert proc.returncode == 0
    for entry in SwatchGroup.lazy:
        assert entry.source.partition(":")[0] in modules


def test_every_command_module_is_registered() -> None:
    """Each cli/ module's Typer is in SwatchGroup.lazy under the names it defines: a group or
    command added to a module and not to app.py fails here (and on first use)."""
    listed = {e.source: e for e in SwatchGroup.lazy}
    found = set()
    for info in pkgutil.iter_modules(cli_pkg.__path__):
        module = importlib.import_module(f"syscall_watcher.cli.{info.name}")
        for attr, value in vars(module).items():
            if isinstance(value, typer.Typer) and value is not app and (
                    value.registered_commands or value.registered_groups):
                source = f"syscall_watcher.cli.{info.name}:{attr}"
                assert source in listed, f"{source} is not in SwatchGroup.lazy (cli/app.py)"
                found.add(source)
                entry = listed[source]
                assert sorted(entry.build(None)) == sorted(entry.names)
    assert found == set(listed)


def test_usage_errors_unchanged_through_the_entry_point() -> None:
    """Bad values still fail as typer words them (its adapter decides what is not plain)."""
    cases = [
        (["run", "--ring-size", "1.5", "--", "true"], "Invalid value for '--ring-size': Input "
         "should be a valid integer, unable to parse string as an integer"),
        (["run", "--color", "ALWAYS", "--", "true"], "Invalid value for '--color': Value error, "
         "'ALWAYS' is not one of 'auto', 'always', 'never'."),
        (["run", "-s", "-1", "--", "true"], "Invalid value for '--string-limit' / '-s': Input "
         "should be greater than or equal to 0"),
        (["watch", "--duration", "abc"], "Invalid value for '--duration': Input should be a "
         "valid number, unable to parse string as a number"),
    ]
    for argv, needle in cases:
        proc = subprocess.run([SWATCH, *argv], capture_output=True, text=True, timeout=60)
        assert proc.returncode == 2, proc
        assert proc.stderr.count("\n") == 1 and needle in proc.stderr, proc.stderr
    # an odd but valid spelling still works (typer's adapter takes it): the run fails later
    proc = subprocess.run([SWATCH, "run", "--max-pids", " 1_000", "--", "/no/such/program"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1 and "command not found" in proc.stderr, proc


def test_data_twins_are_the_yaml(tmp_path: Path) -> None:
    """Each data file reads the same from its JSON twin as from its YAML; a twin made from
    other text (the YAML edited since) is not used: the YAML is."""
    for name in ("syscalls.yaml", "profiles.yaml"):
        src = syscalls.DATA / name
        assert (syscalls.DATA / f"{name}.json").is_file(), "`make venv` writes the twins"
        assert syscalls._load_yaml(src) == yaml.safe_load(src.read_text())
        copy = tmp_path / name
        shutil.copyfile(syscalls.DATA / f"{name}.json", tmp_path / f"{name}.json")
        copy.write_text(src.read_text() + "edited_since: 1\n")
        assert syscalls._load_yaml(copy) == {**yaml.safe_load(src.read_text()),
                                             "edited_since": 1}
        (tmp_path / f"{name}.json").unlink()
        assert syscalls._load_yaml(copy)["edited_since"] == 1
