"""strace-style options (issue 10 §4), each checked on what the kernel reported for a real
workload: -e, --failed, -T, -t/-tt/-ttt/-r, -s, several -p, -f, -c, --ancestry, the exec view,
start-up folding, fstat names, signal names, shell quoting, summary --by pid names."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import SWATCH, read_events, swatch, wait_for

VERB_RE = re.compile(r"^\S+\s+(\d+)\s+(\S+)\s+([A-Z]+)\s+(.*)$")


def _lines(text: str) -> list[tuple[int, str, str, str]]:
    """(pid, comm, verb, rest) of each human line (default timestamps)."""
    out = []
    for line in text.splitlines():
        m = VERB_RE.match(line)
        if m:
            out.append((int(m[1]), m[2], m[3], m[4]))
    return out


def _known(tmp_path: Path) -> Path:
    d = Path(os.path.realpath(tmp_path))
    (d / "input.txt").write_bytes(b"a" * 2000)
    return d


def test_help_and_version_flags() -> None:
    for args in (["-h"], ["--help"], ["run", "-h"], ["watch", "-h"], ["load", "-h"]):
        proc = swatch(*args)
        assert proc.returncode == 0, (args, proc.stderr)
        assert "Usage: swatch" in proc.stdout
    proc = swatch("--version")
    assert proc.returncode == 0
    assert re.fullmatch(r"swatch \d+\.\d+\.\d+\n", proc.stdout)
    help_text = swatch("watch", "--help", env={"COLUMNS": "200"}).stdout
    assert "SWATCH_PIN_DIR" in help_text and "SWATCH_POLICY_PIN_DIR" in help_text


def test_dash_f_is_follow_forks(tmp_path: Path) -> None:
    out = tmp_path / "ev.json"
    proc = swatch("run", "-f", "--json", "-o", str(out), "--", "sh", "-c", "/bin/true; exit 4")
    assert proc.returncode == 4, proc.stderr
    execs = [e for e in read_events(out) if e["type"] == "exec"]
    assert [e["filename"] for e in execs][-1] == "/bin/true"  # the child was followed


def test_dash_c_counts_only(tmp_path: Path, listener, workload) -> None:  # type: ignore[no-untyped-def]
    port, _ = listener
    d = _known(tmp_path)
    proc = swatch("run", "-c", "--", workload("known"), str(d), str(port))
    assert proc.returncode == 3, proc.stderr
    assert proc.stdout == ""  # no event lines
    table = {line.split()[0]: line.split() for line in proc.stderr.splitlines() if line}
    assert table["connect"][1] == "1"
    assert int(table["openat"][2]) >= 1  # missing.txt failed
    assert "events delivered=0" in proc.stderr


def test_e_picks_syscalls(tmp_path: Path, listener, workload) -> None:  # type: ignore[no-untyped-def]
    port, _ = listener
    d = _known(tmp_path)
    proc = swatch("run", "-o", "-", "--color", "never", "-e", "openat", "--", workload("known"),
                  str(d), str(port))
    assert proc.returncode == 3, proc.stderr
    lines = _lines(proc.stdout)
    assert lines and {verb for _, _, verb, _ in lines} == {"OPEN"}
    rests = [rest for _, _, _, rest in lines]
    assert f'"{d}/input.txt" -> fd 3' in rests
    assert f'"{d}/missing.txt" -> ENOENT' in rests

    out = tmp_path / "ev.json"
    proc = swatch("run", "--json", "-o", str(out), "-e", "trace=connect,write", "-e", "!write",
                  "--", workload("known"), str(d), str(port))
    assert proc.returncode == 3, proc.stderr
    events = read_events(out)
    assert [(e["type"], e["syscall"], e["addr"]) for e in events] == [
        ("syscall", "connect", f"127.0.0.1:{port}")]


def test_e_combines_with_a_profile(tmp_path: Path, listener, workload) -> None:  # type: ignore[no-untyped-def]
    port, _ = listener
    d = _known(tmp_path)
    out = tmp_path / "ev.json"
    proc = swatch("run", "--json", "-o", str(out), "--filter", "network", "-e", "openat",
                  "-e", "!close", "--", workload("known"), str(d), str(port))
    assert proc.returncode == 3, proc.stderr
    events = read_events(out)
    names = {e["syscall"] for e in events if e["type"] == "syscall"}
    assert {"openat", "connect", "socket"} <= names  # the profile's and -e's
    assert "close" not in names and "read" not in names  # !close; read is in neither
    assert {"exec", "fork", "exit"} <= {e["type"] for e in events}  # the profile's records


@pytest.mark.parametrize("expr,needle", [("opnat", "did you mean openat"),
                                         ("!conect", "did you mean connect"),
                                         ("%nosuch", "unknown class")])
def test_e_names_are_checked(expr: str, needle: str) -> None:
    proc = swatch("run", "-e", expr, "--", "true")
    assert proc.returncode == 1
    assert proc.stderr.startswith("swatch: error: ") and needle in proc.stderr
    assert "Traceback" not in proc.stderr


def test_failed_only(tmp_path: Path, listener, workload) -> None:  # type: ignore[no-untyped-def]
    port, _ = listener
    d = _known(tmp_path)
    out = tmp_path / "ev.json"
    proc = swatch("run", "--failed", "--json", "-o", str(out), "--", workload("known"), str(d),
                  str(port))
    assert proc.returncode == 3, proc.stderr
    events = read_events(out)
    assert events and all(e["type"] == "syscall" and "error" in e for e in events)
    assert any(e.get("path") == f"{d}/missing.txt" and e["error"] == "ENOENT" for e in events)
    proc = swatch("run", "-o", "-", "-Z", "--color", "never", "--", workload("known"), str(d),
                  str(port))
    rests = [rest for _, _, _, rest in _lines(proc.stdout)]
    assert f'"{d}/missing.txt" -> ENOENT' in rests
    assert rests and all(re.search(r"\bE[A-Z0-9]{2,}\b", r) for r in rests), rests


def test_T_shows_durations(tmp_path: Path, listener, workload) -> None:  # type: ignore[no-untyped-def]
    port, _ = listener
    d = _known(tmp_path)
    proc = swatch("run", "-o", "-", "--color", "never", "-T", "-e", "read", "--",
                  workload("known"), str(d), str(port))
    lines = [line for line in proc.stdout.splitlines() if "READ" in line]
    assert len(lines) >= 3
    assert all(re.search(r" <\d+\.\d{6}>$", line) for line in lines)


@pytest.mark.parametrize("flags,pattern", [
    (["-t"], r"^\d\d:\d\d:\d\d \d+ "),
    (["-tt"], r"^\d\d:\d\d:\d\d\.\d{6} \d+ "),
    (["-ttt"], r"^\d{10}\.\d{6} \d+ "),
    (["-r"], r"^ *\d+\.\d{6} \d+ "),
    ([], r"^\d\d:\d\d:\d\d\.\d{3} \d+ "),
])
def test_timestamp_styles(flags: list[str], pattern: str) -> None:
    proc = swatch("run", "-o", "-", "--color", "never", *flags, "-e", "openat", "--", "cat",
                  "/etc/hostname")
    assert proc.returncode == 0, proc.stderr
    lines = [line for line in proc.stdout.splitlines() if "OPEN" in line]
    assert lines and all(re.match(pattern, line) for line in lines), lines
    if flags == ["-ttt"]:
        import time
        stamp = float(lines[0].split()[0])
        assert abs(stamp - time.time()) < 600  # wall clock, not boot time
    if flags == ["-r"]:
        assert float(lines[0].split()[0]) == 0.0  # nothing before the first line


def test_s_cuts_strings(tmp_path: Path) -> None:
    long_arg = "abcdefghijklmnopqrstuvwxyz"
    proc = swatch("run", "-o", "-", "--color", "never", "-s", "10", "-e", "openat,execve", "--",
                  "cat", "/etc/hostname", "/nonexistent/" + long_arg)
    assert proc.returncode == 1
    rests = [rest for _, _, _, rest in _lines(proc.stdout)]
    assert '"/etc/hostn..." -> fd 3' in rests
    assert '"/nonexiste..." -> ENOENT' in rests
    assert "/usr/bin/c... /etc/hostn... /nonexiste..." in rests


class Gated:
    """A process that waits for a line on stdin, then opens a marker file and waits again."""

    def __init__(self, marker: Path) -> None:
        code = ("import sys\nsys.stdin.readline()\nopen(sys.argv[1]).close()\n"
                "print('done', flush=True)\nsys.stdin.readline()\n")
        self.proc = subprocess.Popen([sys.executable, "-c", code, str(marker)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    def step(self) -> None:
        """Let it open its marker; returns once it has."""
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write("go\n")
        self.proc.stdin.flush()
        assert self.proc.stdout.readline() == "done\n"

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait()


def test_several_pids_traced(tmp_path: Path, pin_dir: Path) -> None:
    markers = [tmp_path / "marker-a", tmp_path / "marker-b"]
    for m in markers:
        m.write_text("x")
    a, b = Gated(markers[0]), Gated(markers[1])
    outsider = Gated(tmp_path / "marker-a")
    watch = None
    try:
        swatch("load", "--pin-dir", str(pin_dir), "-p", str(a.proc.pid), "-p",
               str(b.proc.pid), "-e", "openat", check=True)
        status = json.loads(swatch("status", "--json", "--pin-dir", str(pin_dir)).stdout)
        assert set(status["pids"]) == {a.proc.pid, b.proc.pid}
        out = tmp_path / "w.json"
        watch = subprocess.Popen([SWATCH, "watch", "--json", "-o", str(out), "--pin-dir",
                                  str(pin_dir)])
        assert wait_for(lambda: json.loads(swatch("status", "--json", "--pin-dir",
                                                  str(pin_dir)).stdout)["watching"])
        for g in (a, b, outsider):
            g.step()
    finally:
        if watch is not None:
            watch.send_signal(signal.SIGINT)  # writes out everything delivered
            watch.wait(timeout=20)
        for g in (a, b, outsider):
            g.close()
    events = read_events(out)
    opened = [e for e in events if e.get("path") in {str(m) for m in markers}]
    assert {(e["pid"], e["path"]) for e in opened} == {
        (a.proc.pid, str(markers[0])), (b.proc.pid, str(markers[1]))}
    assert all(e["pid"] in (a.proc.pid, b.proc.pid) for e in events)


def test_ancestry_chain(tmp_path: Path) -> None:
    out = tmp_path / "ev.json"
    proc = subprocess.Popen([SWATCH, "run", "--json", "-o", str(out), "--", "sh", "-c",
                             "cat /etc/hostname; exit 0"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    execs = {e["comm"]: e for e in read_events(out) if e["type"] == "exec"}
    sh, cat = execs["sh"], execs["cat"]
    with open("/proc/self/comm") as f:
        me = f.read().strip()
    assert sh["ppid"] == proc.pid
    assert sh["ancestry"][-2:] == [{"pid": os.getpid(), "comm": me},
                                   {"pid": proc.pid, "comm": "swatch"}]
    assert cat["ancestry"][-3:] == [{"pid": os.getpid(), "comm": me},
                                    {"pid": proc.pid, "comm": "swatch"},
                                    {"pid": sh["pid"], "comm": "sh"}]
    assert 3 <= len(cat["ancestry"]) <= 8

    human = subprocess.Popen([SWATCH, "run", "-o", "-", "--color", "never", "--ancestry", "-e",
                              "execve", "--", "sh", "-c", "cat /etc/hostname; exit 0"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    text, err = human.communicate(timeout=60)
    lines = [rest for _, comm, verb, rest in _lines(text) if verb == "EXEC" and comm == "cat"]
    assert len(lines) == 1
    sh_pid = next(pid for pid, comm, verb, _ in _lines(text) if verb == "EXEC" and comm == "sh")
    cat_pid = next(pid for pid, comm, verb, _ in _lines(text) if verb == "EXEC" and comm == "cat")
    assert lines[0].endswith(f"{me}({os.getpid()}) → swatch({human.pid}) → sh({sh_pid}) → "
                             f"cat({cat_pid})]")


@pytest.mark.parametrize("how", [["--filter", "exec"], ["-e", "execve"]])
def test_exec_view_with_failed_exec(how: list[str]) -> None:
    proc = subprocess.Popen([SWATCH, "run", "-o", "-", "--color", "never", *how, "--", "sh", "-c",
                             "/nonexistent/prog; /bin/true x"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    text, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    lines = _lines(text)
    assert {verb for _, _, verb, _ in lines} == {"EXEC"}, text
    sh_pid = lines[0][0]
    assert lines[0][3] == f'/usr/bin/sh -c "/nonexistent/prog; /bin/true x" -> 0 (ppid {proc.pid})'
    rests = [(rest, pid) for pid, _, _, rest in lines[1:]]
    assert len(rests) == 2
    assert rests[0][0] == f'"/nonexistent/prog" -> ENOENT (ppid {sh_pid})'
    assert rests[1][0] == f"/bin/true x -> 0 (ppid {sh_pid})"


STARTUP_RE = re.compile(r'^"(/[^"]*)" -> fd \d+$')


def _startup_kind(path: str) -> str | None:
    """The start-up classes the folded EXEC line counts (as kernel/shim/format.c's startup_kind)."""
    base = path.rsplit("/", 1)[1]
    if path.startswith(("/usr/lib/locale/", "/usr/share/locale/")) or "/gconv/" in path:
        return "locale"
    if re.search(r"\.so($|\.)", base) and not path.startswith("/etc/ld.so."):
        return "lib"
    return None


def test_startup_folds_into_exec_line(tmp_path: Path) -> None:
    target = tmp_path / "data.txt"
    target.write_text("hello\n")
    env = {"LANG": "C.UTF-8", "LC_ALL": "C.UTF-8"}
    full = swatch("run", "-o", "-", "--color", "never", "--filter", "all", "--", "cat",
                  str(target), env=env)
    assert full.returncode == 0, full.stderr
    lines = _lines(full.stdout)
    first_own = next(i for i, (_, _, verb, rest) in enumerate(lines)
                     if verb == "OPEN" and str(target) in rest)
    kinds = [_startup_kind(m[1]) for _, _, verb, rest in lines[:first_own]
             if verb == "OPEN" and (m := STARTUP_RE.match(rest))]
    libs, locale = kinds.count("lib"), kinds.count("locale")
    assert libs >= 1 and locale >= 1  # cat loads libc and its locale (C.UTF-8)

    folded = swatch("run", "-o", "-", "--color", "never", "--", "cat", str(target), env=env)
    assert folded.returncode == 0, folded.stderr
    flines = _lines(folded.stdout)
    assert flines[0][2] == "EXEC"
    m = re.search(r"\(ld\.so: (\d+) libs?, (\d+) locale files?; (\d+) start-up events? folded\)$",
                  flines[0][3])
    assert m, flines[0]
    assert (int(m[1]), int(m[2])) == (libs, locale)
    assert flines[1][2:] == ("OPEN", f'"{target}" -> fd 3')
    assert not any("ld.so.cache" in rest or "/locale" in rest for _, _, _, rest in flines)

    # JSON keeps every record
    out = tmp_path / "ev.json"
    swatch("run", "--json", "-o", str(out), "--", "cat", str(target), env=env, check=True)
    paths = [e.get("path") for e in read_events(out) if e["type"] == "syscall"]
    assert "/etc/ld.so.cache" in paths


def test_held_exec_line_released_while_process_runs() -> None:
    """sleep does nothing the default profile shows after its start-up: its folded EXEC line
    must still come out while it sleeps (100 ms after the exec), not at its exit.

    Driven through the core API with wakeup_bytes=0 (every record wakes the consumer) so the
    test sees the formatter's hold-and-release alone; the ring buffer's own wakeups are
    issue 10 section 1's."""
    import io

    from syscall_watcher.trace.run import _held_child
    from syscall_watcher.trace.stream import Streamer
    from syscall_watcher.targets.target import Target
    from syscall_watcher.trace.tracer import LoadedTracer
    from syscall_watcher.trace.view import TraceView

    pid, release = _held_child("/usr/bin/sleep", ["sleep", "30"])
    tracer = None
    try:
        tracer = LoadedTracer.load(Target(mode="pid", pid=pid), "default", wakeup_bytes=0)
        out = io.BytesIO()
        with Streamer(tracer, out, view=TraceView(fold_startup=True)) as streamer:
            os.close(release)
            release = -1

            def shown() -> bool:
                streamer.pump(20)
                return b"EXEC    /usr/bin/sleep 30 (ld.so: " in out.getvalue()

            assert wait_for(shown, timeout=20), out.getvalue()
            assert os.waitpid(pid, os.WNOHANG) == (0, 0)  # sleep is still sleeping
            line = out.getvalue().decode()
            assert line.count("\n") == 1 and "folded)" in line  # nothing else, nothing lost
    finally:
        if release >= 0:
            os.close(release)
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        if tracer is not None:
            tracer.close()


def test_folded_exec_line_is_live_end_to_end(tmp_path: Path) -> None:
    """The same through `swatch run -o FILE`: the line is in the file while sleep sleeps."""
    out = tmp_path / "lines.txt"
    proc = subprocess.Popen([SWATCH, "run", "--color", "never", "-o", str(out), "--",
                             "sleep", "30"], stderr=subprocess.PIPE)
    try:
        assert wait_for(lambda: out.exists() and "EXEC    /usr/bin/sleep 30 (ld.so: "
                        in out.read_text(), timeout=20)
        assert proc.poll() is None  # still running: the line did not wait for the exit
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)


def test_fstat_names_the_fd() -> None:
    proc = swatch("run", "-o", "-", "--color", "never", "--filter", "file", "--", "cat",
                  "/etc/hostname")
    assert proc.returncode == 0, proc.stderr
    rests = [rest for _, _, verb, rest in _lines(proc.stdout) if verb == "STAT"]
    assert '"/etc/hostname"' in rests
    assert '""' not in rests


def test_signal_names_and_plurals() -> None:
    proc = swatch("run", "-o", "-", "--color", "never", "--", "sh", "-c", "kill -9 $$")
    assert proc.returncode == 137
    assert "sh killed by SIGKILL after" in proc.stderr
    assert "code -9" not in proc.stderr
    assert "— 1 process ===" in proc.stderr
    assert "EXIT    killed by SIGKILL" in proc.stdout
    ok = swatch("run", "--", "sh", "-c", "/bin/true; exit 0")
    assert "— 2 processes ===" in ok.stderr
    m = re.search(r"swatch: [\d,]+ syscalls, (\d+) (errors?)\n", ok.stderr)
    assert m and m[2] == ("error" if m[1] == "1" else "errors")


def test_exec_arguments_quoted_as_a_shell_would() -> None:
    script = 'true "a b" \'$HOME\'\nexit 0'
    proc = subprocess.Popen([SWATCH, "run", "-o", "-", "--color", "never", "-e", "execve", "--",
                             "sh", "-c", script, "x`y"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    text, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    lines = [rest for _, _, verb, rest in _lines(text) if verb == "EXEC"]
    assert lines[0] == ('/usr/bin/sh -c "true \\"a b\\" \'\\$HOME\'\\nexit 0" "x\\`y" '
                        f"-> 0 (ppid {proc.pid})")


def test_summary_by_pid_names_exec_image(tmp_path: Path, pin_dir: Path) -> None:
    """A child forked by sh that execs cat is `cat` in `summary --by pid`."""
    gate = subprocess.Popen(["sh", "-c", "read x; cat"], stdin=subprocess.PIPE, text=True)
    try:
        swatch("load", "--pin-dir", str(pin_dir), "-p", str(gate.pid), check=True)
        assert gate.stdin is not None
        gate.stdin.write("go\n")
        gate.stdin.flush()

        def rows() -> list[dict]:  # type: ignore[type-arg]
            out = swatch("summary", "--once", "--json", "--by", "pid", "--pin-dir",
                         str(pin_dir)).stdout
            return [r for r in json.loads(out)["rows"] if r["pid"] != gate.pid]

        assert wait_for(lambda: [r for r in rows() if r["name"] == "cat"], timeout=10), rows()
        assert not [r for r in rows() if r["name"] == "sh"]
    finally:
        gate.kill()
        gate.wait()


def test_man_page_from_the_cli(tmp_path: Path) -> None:
    """`make man` writes swatch(1) with every command and option --help has; it renders."""
    import typer

    from syscall_watcher.cli import app

    page = tmp_path / "swatch.1"
    subprocess.run([sys.executable, "tools/gen_manpage.py", str(page)], check=True,
                   cwd=Path(__file__).resolve().parent.parent)
    rendered = subprocess.run(["man", "-l", str(page)], capture_output=True, text=True,
                              env={**os.environ, "MANWIDTH": "200"}, check=True).stdout
    group = typer.main.get_command(app)
    ctx = typer.Context(group)
    for name in group.list_commands(ctx):
        assert f"swatch {name}" in rendered
        for param in group.get_command(ctx, name).params:
            for opt in getattr(param, "opts", []):
                assert opt in rendered, (name, opt)
            if getattr(param, "envvar", None):
                assert param.show_envvar, (name, param.name)  # --help says it reads it
                assert param.envvar in rendered
