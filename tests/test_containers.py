"""Container resolution against a real dockerd (started by tests/docker-env.sh); run as root."""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import secrets
import shutil
import signal
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from conftest import events_until, stop, wait_for, watching
from syscall_watcher.targets import containers
from syscall_watcher.targets.containers import (
    Container,
    cgroup_id_of,
    cgroup_v2_root,
    clear_container_cache,
    container_of_cgroup_id,
    list_containers,
    parse_cgroup2_mount,
    resolve_container,
)
from syscall_watcher.errors import SwatchError

ENV_SCRIPT = Path(__file__).with_name("docker-env.sh")
IMAGE = "swatch-test-busybox:latest"
SKIP_EXIT = 77  # docker-env.sh: dockerd cannot run here

# --------------------------------------------------------------------------- helpers


def docker(*args: str, check: bool = True) -> str:
    done = subprocess.run(
        ["docker", *args], capture_output=True, text=True, timeout=120, check=False
    )
    if check and done.returncode != 0:
        raise AssertionError(f"docker {' '.join(args)} failed: {done.stderr.strip()}")
    return done.stdout.strip()


def all_container_ids() -> list[str]:
    return docker("ps", "-a", "--no-trunc", "--format", "{{.ID}}").split()


def init_pid(cid: str) -> int:
    return int(docker("inspect", "-f", "{{.State.Pid}}", cid))


def unified_path_of(pid: int) -> str:
    lines = Path(f"/proc/{pid}/cgroup").read_text().splitlines()
    (rel,) = [line[3:] for line in lines if line.startswith("0::")]
    return rel


def kernel_cgroup_id(path: str) -> int:
    """The cgroup id as the kernel hands it out: the 8-byte file handle of the directory.

    This is how systemd and bpftool get the id bpf_get_current_cgroup_id() returns; it does
    not go through stat(), so it checks cgroup_id_of() independently.
    """

    class FileHandle(ctypes.Structure):
        _fields_ = [
            ("handle_bytes", ctypes.c_uint),
            ("handle_type", ctypes.c_int),
            ("f_handle", ctypes.c_ubyte * 64),
        ]

    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    handle = FileHandle(handle_bytes=64)
    mount_id = ctypes.c_int()
    at_fdcwd = -100
    rc = libc.name_to_handle_at(
        at_fdcwd, os.fsencode(path), ctypes.byref(handle), ctypes.byref(mount_id), 0
    )
    if rc != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err), path)
    assert handle.handle_bytes == 8
    return int.from_bytes(bytes(handle.f_handle[:8]), "little")


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="session")
def docker_env() -> Iterator[None]:
    """A running dockerd and the test image; the image is removed again if this session built it."""
    if os.geteuid() != 0:
        pytest.skip("container tests need root (dockerd, /proc of other users' processes)")
    had_image = (
        shutil.which("docker") is not None
        and subprocess.run(
            ["docker", "image", "inspect", IMAGE], capture_output=True, timeout=30, check=False
        ).returncode
        == 0
    )
    done = subprocess.run(
        ["bash", str(ENV_SCRIPT)], capture_output=True, text=True, timeout=900, check=False
    )
    if done.returncode == SKIP_EXIT:
        last = (done.stderr.strip().splitlines() or ["(no message)"])[-1]
        pytest.skip(f"dockerd cannot run here: {last}")
    assert done.returncode == 0, f"{ENV_SCRIPT} failed:\n{done.stderr}"
    assert shutil.which("docker"), "docker CLI missing after docker-env.sh"
    yield
    if not had_image:
        docker("rmi", IMAGE, check=False)


@pytest.fixture(scope="session")
def make_container(docker_env: None) -> Iterator[Callable[..., str]]:
    """Create containers from the test image; every one is removed at session end, pass or fail."""
    del docker_env  # only needed to have run
    made: list[str] = []
    tag = secrets.token_hex(4)

    def make(*cmd: str, start: bool = True, name: str | None = None) -> str:
        name = name or f"swatch-test-{tag}-{len(made)}"
        verb = ["run", "-d"] if start else ["create"]
        cid = docker(*verb, "--name", name, "--label", f"swatch-test={tag}", IMAGE, *cmd)
        made.append(cid)
        return cid

    yield make
    for cid in made:
        docker("rm", "-f", "-v", cid, check=False)
    leftover = docker("ps", "-aq", "--filter", f"label=swatch-test={tag}", check=False).split()
    if leftover:
        docker("rm", "-f", *leftover, check=False)


@pytest.fixture(scope="session")
def sleeper(make_container: Callable[..., str]) -> tuple[str, str]:
    """A running busybox ``sleep 600``: (full id, name)."""
    name = f"swatch-test-{secrets.token_hex(6)}"
    cid = make_container("sleep", "600", name=name)
    assert docker("inspect", "-f", "{{.State.Running}}", cid) == "true"
    return cid, name


# --------------------------------------------------------------------------- cgroup v2 mount

HYBRID = """\
24 30 0:22 / /sys rw,relatime shared:7 - sysfs sysfs rw
31 24 0:28 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:9 - tmpfs tmpfs ro,mode=755
32 31 0:29 / /sys/fs/cgroup/unified rw,relatime shared:10 - cgroup2 cgroup2 rw
33 31 0:30 / /sys/fs/cgroup/systemd rw,relatime shared:11 - cgroup cgroup rw,name=systemd
34 31 0:31 / /sys/fs/cgroup/memory rw,relatime shared:12 - cgroup cgroup rw,memory
"""
V2_ONLY = """\
24 30 0:22 / /sys rw,relatime shared:7 - sysfs sysfs rw
31 24 0:27 / /sys/fs/cgroup rw,relatime shared:9 - cgroup2 cgroup2 rw,nsdelegate
"""
V1_ONLY = """\
31 24 0:28 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:9 - tmpfs tmpfs ro,mode=755
34 31 0:31 / /sys/fs/cgroup/memory rw,relatime shared:12 - cgroup cgroup rw,memory
"""


@pytest.mark.parametrize(
    ("text", "expected"),
    [(HYBRID, "/sys/fs/cgroup/unified"), (V2_ONLY, "/sys/fs/cgroup"), (V1_ONLY, None)],
    ids=["hybrid", "v2-only", "v1-only"],
)
def test_parse_cgroup2_mount(text: str, expected: str | None) -> None:
    assert parse_cgroup2_mount(text) == expected


def test_cgroup2_mount_root_of_the_visible_mount() -> None:
    """The root field of the cgroup2 mount last mounted at a point (the one a path reaches):
    a pod's own namespaced mount under the node's, bind-mounted over it."""
    pod = (
        "60 50 0:29 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n"
        "61 50 0:29 /../../.. /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n"
    )
    assert containers.cgroup2_mount_root(pod, "/sys/fs/cgroup") == "/../../.."
    assert containers.cgroup2_mount_root(V2_ONLY, "/sys/fs/cgroup") == "/"
    assert containers.cgroup2_mount_root(V2_ONLY, "/elsewhere") is None


def test_parse_cgroup2_mount_unescapes_and_prefers_root_mount() -> None:
    text = (
        "50 31 0:29 /sub /mnt/nested rw - cgroup2 cgroup2 rw\n"
        "51 31 0:29 / /mnt/with\\040space rw - cgroup2 cgroup2 rw\n"
    )
    assert parse_cgroup2_mount(text) == "/mnt/with space"


def test_cgroup_v2_root_is_this_machines_cgroup2_mount() -> None:
    root = cgroup_v2_root()
    fstype = subprocess.run(
        ["stat", "-f", "-c", "%T", root], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert fstype == "cgroup2fs"
    # Our own unified-hierarchy path must exist under it.
    assert os.path.isdir(os.path.join(root, unified_path_of(os.getpid()).lstrip("/")))


# --------------------------------------------------------------------------- resolution


def check_is_sleeper(c: Container, cid: str, name: str) -> None:
    assert c.id == cid
    assert c.short_id == cid[:12]
    assert c.name == name
    assert c.runtime == "docker"
    assert c.state == "running"
    assert init_pid(cid) in c.pids


def test_resolve_by_name(sleeper: tuple[str, str]) -> None:
    cid, name = sleeper
    check_is_sleeper(resolve_container(name), cid, name)


def test_resolve_by_full_id(sleeper: tuple[str, str]) -> None:
    cid, name = sleeper
    check_is_sleeper(resolve_container(cid), cid, name)


def test_resolve_by_unique_prefix(sleeper: tuple[str, str]) -> None:
    cid, name = sleeper
    others = [i for i in all_container_ids() if i != cid]
    # The shortest prefix of our id that no other container on the host shares.
    length = next(n for n in range(1, 65) if not any(o.startswith(cid[:n]) for o in others))
    for n in sorted({length, 12}):
        check_is_sleeper(resolve_container(cid[:n]), cid, name)


def test_ambiguous_prefix_lists_every_match(make_container: Callable[..., str]) -> None:
    # 17 ids cannot all start with different hex digits, so this ends within 17 containers.
    made: list[str] = []
    pair: tuple[str, str] | None = None
    while pair is None:
        new = make_container("true", start=False)
        pair = next(((old, new) for old in made if old[0] == new[0]), None)
        made.append(new)
    a, b = pair
    prefix = a[: next(i for i, (x, y) in enumerate(zip(a, b, strict=True)) if x != y)]
    expected = [i for i in all_container_ids() if i.startswith(prefix)]
    assert len(expected) >= 2
    with pytest.raises(SwatchError) as caught:
        resolve_container(prefix)
    msg = str(caught.value)
    assert "\n" not in msg
    assert "ambiguous" in msg
    assert f"matches {len(expected)} containers" in msg
    for cid in expected:
        name = docker("inspect", "-f", "{{.Name}}", cid).lstrip("/")
        assert f"{name} ({cid[:12]})" in msg


@pytest.mark.usefixtures("docker_env")
def test_unknown_name() -> None:
    ref = f"swatch-test-no-such-{secrets.token_hex(6)}"
    with pytest.raises(SwatchError, match=r"^no such container: '.*' \(asked docker") as caught:
        resolve_container(ref)
    assert "\n" not in str(caught.value)


@pytest.mark.usefixtures("docker_env")
def test_unknown_hex_id() -> None:
    known = all_container_ids()
    ref = next(
        p
        for p in (f"{d}" * 20 for d in "0123456789abcdef")
        if not any(i.startswith(p) for i in known)
    )
    with pytest.raises(SwatchError, match=r"^no such container"):
        resolve_container(ref)


@pytest.mark.usefixtures("docker_env")
def test_empty_reference() -> None:
    with pytest.raises(SwatchError, match="empty container reference"):
        resolve_container("  ")


@pytest.mark.parametrize("how", ["created", "exited"])
def test_stopped_container(make_container: Callable[..., str], how: str) -> None:
    if how == "created":
        cid = make_container("sleep", "600", start=False)
    else:
        cid = make_container("true")
        assert docker("wait", cid) == "0"
    name = docker("inspect", "-f", "{{.Name}}", cid).lstrip("/")
    assert docker("inspect", "-f", "{{.State.Status}}", cid) == how
    for ref in (name, cid):
        with pytest.raises(SwatchError) as caught:
            resolve_container(ref)
        msg = str(caught.value)
        assert msg.startswith(f"container {name} ({cid[:12]}) is not running (state: {how})")
        assert "\n" not in msg


# --------------------------------------------------------------------------- cgroups


def test_cgroup_is_the_one_the_container_process_is_in(sleeper: tuple[str, str]) -> None:
    cid, name = sleeper
    c = resolve_container(name)
    pid = init_pid(cid)
    expected_path = os.path.join(cgroup_v2_root(), unified_path_of(pid).lstrip("/"))
    assert c.cgroup_path == expected_path
    assert cid in c.cgroup_path
    assert c.cgroup_id == os.stat(expected_path).st_ino == cgroup_id_of(c.cgroup_path)
    assert c.cgroup_id == kernel_cgroup_id(c.cgroup_path)
    assert str(pid) in Path(c.cgroup_path, "cgroup.procs").read_text().split()
    # Not the parent (/docker) nor the root: the id is the container's own cgroup.
    assert c.cgroup_id != os.stat(os.path.dirname(c.cgroup_path)).st_ino


def test_exec_process_shares_the_cgroup(sleeper: tuple[str, str]) -> None:
    cid, name = sleeper
    init = init_pid(cid)
    client = subprocess.Popen(
        ["docker", "exec", cid, "sleep", "31"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    extra: list[int] = []
    try:
        def exec_shown_up() -> bool:
            nonlocal c, extra
            c = resolve_container(name)
            extra = [p for p in c.pids if p != init]
            return bool(extra)

        c = resolve_container(name)
        assert wait_for(exec_shown_up, timeout=10), \
            "the docker exec'd process never showed up in the container's pids"
        for pid in c.pids:
            assert unified_path_of(pid) == unified_path_of(init)
    finally:
        for pid in extra:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        client.wait(timeout=30)


def test_list_containers_includes_running_only(
    sleeper: tuple[str, str], make_container: Callable[..., str]
) -> None:
    cid, name = sleeper
    stopped = make_container("sleep", "600", start=False)
    listed = {c.id: c for c in list_containers()}
    assert cid in listed
    assert listed[cid].name == name
    assert replace(listed[cid], pids=()) == replace(resolve_container(cid), pids=())
    assert stopped not in listed
    running = set(docker("ps", "-q", "--no-trunc").split())
    assert running <= set(listed)


def test_container_of_cgroup_id(sleeper: tuple[str, str]) -> None:
    cid, name = sleeper
    c = resolve_container(cid)
    host_cgroup = cgroup_id_of(
        os.path.join(cgroup_v2_root(), unified_path_of(os.getpid()).lstrip("/"))
    )
    clear_container_cache()
    found = container_of_cgroup_id([c.cgroup_id, host_cgroup])
    assert found == {c.cgroup_id: (cid[:12], name)}
    # Cached: a second lookup answers the same without a refresh in between.
    assert container_of_cgroup_id([c.cgroup_id]) == {c.cgroup_id: (cid[:12], name)}


# --------------------------------------------------------------------------- other back ends


def test_containerd_backend_sees_docker_container(sleeper: tuple[str, str]) -> None:
    if shutil.which("ctr") is None:
        pytest.skip("ctr not installed (docker.io depends on containerd, which ships it)")
    cid, _name = sleeper
    docker_view = resolve_container(cid)
    c = resolve_container(cid[:16], runtimes=("containerd",))
    assert c.runtime == "containerd"
    assert c.id == cid
    assert c.state == "running"
    assert (c.cgroup_path, c.cgroup_id) == (docker_view.cgroup_path, docker_view.cgroup_id)
    assert init_pid(cid) in c.pids


def test_cgroup_scan_fallback(sleeper: tuple[str, str]) -> None:
    cid, _name = sleeper
    docker_view = resolve_container(cid)
    c = resolve_container(cid[:12], runtimes=())
    assert c.runtime == "cgroup-scan"
    assert c.id == cid
    assert (c.cgroup_path, c.cgroup_id) == (docker_view.cgroup_path, docker_view.cgroup_id)
    assert init_pid(cid) in c.pids


@pytest.mark.usefixtures("docker_env")
def test_nothing_reachable_and_nothing_found() -> None:
    with pytest.raises(SwatchError, match=r"^no container runtime reachable \(none asked\)"):
        resolve_container(f"swatch-test-no-such-{secrets.token_hex(6)}", runtimes=())


def test_unreachable_docker_is_skipped_not_fatal(
    sleeper: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # A real, closed socket path: the docker back end must count as unreachable, and the
    # cgroup scan must still find the container.
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    cid, _name = sleeper
    c = resolve_container(cid, runtimes=("docker",))
    assert c.runtime == "cgroup-scan"
    assert c.id == cid
    with pytest.raises(SwatchError, match=r"^no container runtime reachable \(docker\)"):
        resolve_container("swatch-test-no-such-name", runtimes=("docker",))


@pytest.mark.usefixtures("docker_env")
def test_unknown_runtime_name() -> None:
    with pytest.raises(SwatchError, match="unknown container runtime 'podman'"):
        resolve_container("x", runtimes=("podman",))


def test_module_has_no_cli_imports() -> None:
    source = Path(containers.__file__).read_text()
    assert "typer" not in source


# --------------------------------------------------------------------------- tracing a container


def _watch(pin_dir: Path, out: Path, seconds: float) -> subprocess.Popen:  # type: ignore[type-arg]
    from conftest import SWATCH

    return subprocess.Popen(
        [SWATCH, "watch", "--json", "-o", str(out), "--duration", str(seconds),
         "--pin-dir", str(pin_dir)],
        stderr=subprocess.PIPE, text=True,
    )


def test_trace_container_by_name_exec_only(
    sleeper: tuple[str, str], pin_dir: Path, tmp_path: Path
) -> None:
    from conftest import read_events, swatch

    cid, name = sleeper
    r = swatch("load", "--container", name, "--filter", "minimal", "--pin-dir", str(pin_dir))
    assert r.returncode == 0, r.stderr
    assert f"container {cid[:12]} ({name})" in r.stdout
    out = tmp_path / "c.jsonl"
    w = _watch(pin_dir, out, 60)
    try:
        watching(pin_dir, w)
        host = subprocess.run(["cat", "/etc/hostname"], capture_output=True)  # never traced
        assert host.returncode == 0
        docker("exec", cid, "cat", "/etc/hostname")  # started after load: still traced
        # The ring keeps order: once the container's cat exits, the host's cat (earlier)
        # would have been read before it.
        events_until(out, lambda ev: any(e.get("path") == "/etc/hostname" and "container" in e
                                         for e in ev))
    finally:
        assert stop(w) == 0, w.stderr.read() if w.stderr else ""
    ev = read_events(out)
    opens = [e for e in ev if e.get("path") == "/etc/hostname"]
    assert len(opens) == 1, opens
    assert opens[0]["comm"] == "cat"
    assert opens[0]["container"] == f"{cid[:12]} ({name})"
    assert opens[0]["ret"] >= 0
    assert all(e.get("container", "").startswith(cid[:12]) for e in ev)
    assert host.returncode == 0 and not any(e["pid"] == os.getpid() for e in ev)


def test_load_by_prefix_and_full_id(sleeper: tuple[str, str], pin_dir: Path) -> None:
    from conftest import swatch

    cid, name = sleeper
    for ref in (cid, cid[:12]):
        r = swatch("load", "--container", ref, "--replace", "--pin-dir", str(pin_dir))
        assert r.returncode == 0, r.stderr
        assert name in r.stdout


def test_load_unknown_and_stopped_container(make_container: Callable[..., str],
                                            pin_dir: Path) -> None:
    from conftest import swatch

    r = swatch("load", "--container", "no-such-container-xyz", "--pin-dir", str(pin_dir))
    assert r.returncode == 1 and r.stderr.count("\n") == 1
    assert "no such container" in r.stderr
    stopped = make_container("true", start=False)
    r = swatch("load", "--container", stopped, "--pin-dir", str(pin_dir))
    assert r.returncode == 1 and "not running" in r.stderr
    assert not pin_dir.exists()


def test_container_exit_while_traced(make_container: Callable[..., str], pin_dir: Path,
                                     tmp_path: Path) -> None:
    from conftest import SWATCH, read_events, swatch

    # The container waits for /go: it reads and exits only once the watch streams.
    cid = make_container("sh", "-c", "until [ -e /go ]; do sleep 0.05; done; "
                         "cat /etc/hostname; exit 7")
    r = swatch("load", "--container", cid, "--filter", "minimal", "--pin-dir", str(pin_dir))
    assert r.returncode == 0, r.stderr
    out = tmp_path / "exit.jsonl"
    err_file = tmp_path / "watch.err"
    with err_file.open("w") as err_out:
        w = subprocess.Popen([SWATCH, "watch", "--json", "-o", str(out), "--duration", "60",
                              "--pin-dir", str(pin_dir)], stderr=err_out)
    try:
        watching(pin_dir, w)
        docker("exec", cid, "touch", "/go")
        assert wait_for(lambda: "has exited" in err_file.read_text(), timeout=20), \
            err_file.read_text()
    finally:
        assert stop(w) == 0, err_file.read_text()
    ev = read_events(out)
    assert any(e.get("path") == "/etc/hostname" for e in ev)
    exits = [e for e in ev if e["type"] == "exit" and e.get("exit_code") == 7]
    assert len(exits) == 1
    st = swatch("status", "--json", "--pin-dir", str(pin_dir))
    assert st.returncode == 0 and '"syscalls_counted": 0' not in st.stdout


def test_containers_command_lists_sleeper(sleeper: tuple[str, str]) -> None:
    from conftest import swatch

    cid, name = sleeper
    out = swatch("containers").stdout
    assert cid[:12] in out and name in out


def test_summary_by_container(sleeper: tuple[str, str], pin_dir: Path) -> None:
    import json

    from conftest import swatch

    cid, name = sleeper
    assert swatch("load", "--container", name, "--pin-dir", str(pin_dir)).returncode == 0
    docker("exec", cid, "cat", "/etc/hostname")
    doc = json.loads(swatch("summary", "--once", "--json", "--by", "container",
                            "--pin-dir", str(pin_dir)).stdout)
    rows = {r["name"]: r for r in doc["rows"]}
    assert f"{cid[:12]} ({name})" in rows, rows
    assert rows[f"{cid[:12]} ({name})"]["count"] > 0
    assert "host" not in rows  # only the container's processes are counted
