"""Find a container's cgroup v2 directory and id, so the tracer can filter on the cgroup.

A container is named by the user as a name, a full 64-hex id or a unique id prefix.  The runtimes
asked, in order: Docker (its Engine API over the unix socket, through the ``docker`` library),
containerd (the ``ctr`` CLI, every namespace), CRI-O (the ``crictl`` CLI); when none of them knows
the reference, the cgroup paths of every process in ``/proc`` are searched for the id.

Whatever the runtime, the cgroup comes from the container's init pid: the ``0::/…`` line of
``/proc/<pid>/cgroup`` joined to the cgroup2 mount.  That line is there in hybrid mode as well as on
a v2-only machine, and the directory's inode number is what ``bpf_get_current_cgroup_id()``
returns for tasks in it.

Over 400 lines on purpose: the three runtimes and the /proc scan answer one question (reference →
init pid → cgroup) with one fallback order and one error message naming what each runtime said;
each runtime's part is a short function, and splitting them would scatter that order.
"""

from __future__ import annotations

import glob
import json
import os
import posixpath
import re
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field

from syscall_watcher.errors import SwatchError

RUNTIMES: tuple[str, ...] = ("docker", "containerd", "cri-o")
"""The runtimes ``resolve_container`` asks, in order, unless told otherwise."""

MOUNTINFO = "/proc/self/mountinfo"
DOCKER_SOCKET = "/var/run/docker.sock"
CONTAINERD_SOCKETS: tuple[str, ...] = (
    "/run/containerd/containerd.sock",  # a system containerd (Docker ≥ 23, Kubernetes nodes)
    "/run/docker/containerd/containerd.sock",  # the one Docker 20.10 starts for itself
)
CLI_TIMEOUT_S = 10.0

# The labels the kubelet puts on every container it makes through the CRI (containerd, CRI-O,
# cri-dockerd): the pod's name and namespace, and the container's name in the pod spec.
POD_NAME_LABEL = "io.kubernetes.pod.name"
POD_NAMESPACE_LABEL = "io.kubernetes.pod.namespace"
POD_CONTAINER_LABEL = "io.kubernetes.container.name"

_FULL_ID = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class PodNames:
    """Where a container sits in Kubernetes, from its runtime labels."""

    namespace: str
    pod: str
    container: str  # "" for a pod's sandbox ("pause") container

    def as_json(self) -> dict[str, str]:
        doc = {"namespace": self.namespace, "pod": self.pod}
        return {**doc, "container": self.container} if self.container else doc


def pod_names(labels: dict[str, str] | None) -> PodNames | None:
    """The Kubernetes names in a container's labels, or None when it is not in a pod."""
    labels = labels or {}
    pod, namespace = labels.get(POD_NAME_LABEL), labels.get(POD_NAMESPACE_LABEL)
    if not pod or not namespace:
        return None
    return PodNames(namespace=str(namespace), pod=str(pod),
                    container=str(labels.get(POD_CONTAINER_LABEL) or ""))
_HEX = re.compile(r"[0-9a-f]+")


@dataclass(frozen=True)
class Container:
    """One running container and the cgroup v2 directory its processes live in."""

    id: str
    name: str
    runtime: str
    cgroup_path: str
    cgroup_id: int
    pids: tuple[int, ...]
    state: str
    kubernetes: PodNames | None = None

    @property
    def short_id(self) -> str:
        return self.id[:12]

    def as_json(self) -> dict[str, object]:
        """`swatch containers --json`'s object for this container."""
        doc: dict[str, object] = {
            "runtime": self.runtime, "id": self.id, "name": self.name,
            "cgroup": self.cgroup_path, "cgroup_id": self.cgroup_id, "pids": list(self.pids)}
        if self.kubernetes is not None:
            doc["kubernetes"] = self.kubernetes.as_json()
        return doc


@dataclass
class _Candidate:
    """What a runtime knows of a container before its cgroup is looked up."""

    id: str
    name: str
    runtime: str
    state: str
    pid: int  # the init pid, 0 when the container has no running process
    aliases: tuple[str, ...] = field(default=())
    labels: dict[str, str] = field(default_factory=dict)

    @property
    def running(self) -> bool:
        return self.pid > 0


# --------------------------------------------------------------------------- cgroup v2 mount


def parse_cgroup2_mount(mountinfo: str) -> str | None:
    """The mount point of the cgroup2 file system in a ``/proc/<pid>/mountinfo`` text, or None.

    With several cgroup2 mounts the one whose root is ``/`` wins, then the shortest path.
    """
    found = [(root != "/", mount_point) for root, mount_point in _cgroup2_mounts(mountinfo)]
    if not found:
        return None
    found.sort(key=lambda item: (item[0], len(item[1])))
    return found[0][1]


def _cgroup2_mounts(mountinfo: str) -> list[tuple[str, str]]:
    """(root as written, unescaped mount point) of each cgroup2 line of a mountinfo text."""
    mounts = []
    for line in mountinfo.splitlines():
        fields = line.split()
        try:
            sep = fields.index("-")
        except ValueError:
            continue
        if len(fields) >= 5 and sep + 1 < len(fields) and fields[sep + 1] == "cgroup2":
            mounts.append((fields[3], _unescape_mountinfo(fields[4])))
    return mounts


def _unescape_mountinfo(text: str) -> str:
    """Mountinfo writes space, tab, newline and backslash as octal escapes (``\\040``)."""
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), text)


def cgroup_v2_root() -> str:
    """Where the cgroup2 hierarchy is mounted: ``/sys/fs/cgroup``, or ``…/unified`` when hybrid."""
    try:
        with open(MOUNTINFO, encoding="utf-8") as f:
            text = f.read()
    except OSError as err:
        raise SwatchError(f"cannot read {MOUNTINFO}: {err.strerror}") from None
    root = parse_cgroup2_mount(text)
    if root is None:
        raise SwatchError(
            "no cgroup2 file system is mounted (cgroup v1 only); "
            "mount one with: mount -t cgroup2 none /sys/fs/cgroup/unified"
        )
    return root


def cgroup2_mount_root(mountinfo: str, mount_point: str) -> str | None:
    """The root field of the cgroup2 mount visible at ``mount_point`` (the last one mounted
    there): the mounted directory as this process's cgroup namespace names it. ``/`` for a
    namespace's own mount; ``/../..`` for a node's whole hierarchy bind-mounted into a
    container with a private cgroup namespace two levels down."""
    root = None
    for mounted_root, point in _cgroup2_mounts(mountinfo):
        if point == mount_point:
            root = _unescape_mountinfo(mounted_root)
    return root


_ns_base: dict[str, str | None] = {}


def cgroupns_base(root: str) -> str | None:
    """Where this process's cgroup namespace root lies in the hierarchy mounted at ``root``
    (e.g. ``/kubepods/burstable/pod…/…``), when that mount shows more than the namespace — a
    pod with a private cgroup namespace (the kubelet's default on cgroup v2 nodes) and the
    node's /sys/fs/cgroup mounted — else None. Then ``/proc/<pid>/cgroup`` names other
    containers' cgroups relative to that root (``/../../<pod>/<id>``), and this joins them to
    it. Found once: the directory that many levels down whose cgroup.procs lists this process.
    """
    if root in _ns_base:
        return _ns_base[root]
    base = None
    try:
        with open(MOUNTINFO, encoding="utf-8") as f:
            mount_root = cgroup2_mount_root(f.read(), root)
    except OSError:
        mount_root = None
    ups = (mount_root or "/").strip("/").split("/")
    own = cgroup_v2_path_of_pid(os.getpid())
    if mount_root and mount_root != "/" and all(u == ".." for u in ups) and own \
            and not own.startswith("/.."):
        own_parts = [x for x in own.strip("/").split("/") if x]
        pid = str(os.getpid())
        levels = ["*"] * (len(ups) + len(own_parts))
        for path in glob.glob(os.path.join(glob.escape(root), *levels)):
            try:
                with open(os.path.join(path, "cgroup.procs"), encoding="ascii") as f:
                    if pid not in f.read().split():
                        continue
            except OSError:
                continue
            rel = "/" + os.path.relpath(path, root)
            base = rel[: len(rel) - len(own.rstrip("/"))] if own_parts else rel
            break
    _ns_base[root] = base
    return base


def cgroup_id_of(path: str) -> int:
    """The cgroup id of a cgroup v2 directory: its inode number (the kernfs node id)."""
    return os.stat(path).st_ino


def cgroup_v2_path_of_pid(pid: int) -> str | None:
    """The ``0::`` (unified hierarchy) path of a process, e.g. ``/docker/<id>``; None if gone."""
    try:
        with open(f"/proc/{pid}/cgroup", encoding="utf-8") as f:
            lines = f.read().splitlines()
    except OSError:  # gone, or not ours to read
        return None
    for line in lines:
        if line.startswith("0::"):
            return line[3:]
    return None


def _cgroup_dir(root: str, rel: str) -> str:
    return os.path.join(root, rel.lstrip("/")) if rel.strip("/") else root


def _cgroup_pids(path: str) -> tuple[int, ...]:
    """Every process in the cgroup and the cgroups below it."""
    pids: set[int] = set()
    for dirpath, _dirs, _files in os.walk(path):
        try:
            with open(os.path.join(dirpath, "cgroup.procs"), encoding="ascii") as f:
                pids.update(int(line) for line in f if line.strip())
        except OSError:
            continue
    return tuple(sorted(pids))


def _subcgroup_ids(path: str) -> Iterator[int]:
    """The cgroup ids of a directory and of every cgroup below it."""
    for dirpath, _dirs, _files in os.walk(path):
        try:
            yield cgroup_id_of(dirpath)
        except OSError:
            continue


def _container_from(candidate: _Candidate, root: str) -> Container:
    label = _describe(candidate)
    rel = cgroup_v2_path_of_pid(candidate.pid)
    if rel is None:
        raise SwatchError(f"container {label} is not running (its process {candidate.pid} is gone)")
    if rel.startswith("/.."):
        base = cgroupns_base(root)  # a pod in its own cgroup namespace, the node's mounted
        if base is not None:
            rel = posixpath.normpath(base + rel)
    if rel.startswith("/.."):
        raise SwatchError(f"container {label} is in a cgroup outside this cgroup namespace ({rel})")
    path = _cgroup_dir(root, rel)
    try:
        cgroup_id = cgroup_id_of(path)
    except OSError as err:
        raise SwatchError(
            f"container {label}: cannot stat its cgroup {path}: {err.strerror}"
        ) from None
    return Container(
        id=candidate.id,
        name=candidate.name,
        runtime=candidate.runtime,
        cgroup_path=path,
        cgroup_id=cgroup_id,
        pids=_cgroup_pids(path) or (candidate.pid,),
        state=candidate.state,
        kubernetes=pod_names(candidate.labels),
    )


# --------------------------------------------------------------------------- runtimes


class _Unreachable(Exception):
    """A runtime is not installed or does not answer; the next one is asked."""


DOCKER_SDK_MISSING = (
    "Docker is running here but swatch cannot ask it: the Docker SDK is not installed "
    "(pip install 'swatch[docker]')"
)


class _DockerSdkMissing(_Unreachable):
    """Docker answers on its socket, but the optional ``docker`` library is not installed."""


def docker_sdk_missing() -> bool:
    """True when a Docker daemon is reachable by socket but the ``docker`` library is missing."""
    if not os.environ.get("DOCKER_HOST") and not os.path.exists(DOCKER_SOCKET):
        return False
    try:
        import docker  # noqa: F401
    except ImportError:
        return True
    return False


def _docker_candidates(known: set[str]) -> list[_Candidate]:
    del known  # asked first: Docker's names win, nothing to skip
    host = os.environ.get("DOCKER_HOST", "")
    if not host and not os.path.exists(DOCKER_SOCKET):
        raise _Unreachable("no docker socket")
    try:  # imported here: optional (swatch[docker]), and slow to import for a CLI
        import docker
        import docker.errors
        import requests
    except ImportError:
        raise _DockerSdkMissing(DOCKER_SDK_MISSING) from None
    try:
        client = docker.DockerClient(base_url=host or f"unix://{DOCKER_SOCKET}", timeout=10)
    except docker.errors.DockerException as err:
        raise _Unreachable(str(err)) from None
    try:
        listed = client.api.containers(all=True)
        candidates: list[_Candidate] = []
        for entry in listed:
            state = str(entry.get("State", "unknown"))
            pid = 0
            if state in ("running", "paused"):
                try:
                    info = client.api.inspect_container(entry["Id"])
                except docker.errors.NotFound:
                    continue  # removed since it was listed
                pid = int(info.get("State", {}).get("Pid") or 0)
                state = str(info.get("State", {}).get("Status", state))
            names = [str(n).lstrip("/") for n in entry.get("Names") or []]
            candidates.append(
                _Candidate(
                    id=str(entry["Id"]),
                    name=names[0] if names else str(entry["Id"])[:12],
                    runtime="docker",
                    state=state,
                    pid=pid,
                    aliases=tuple(names[1:]),
                    labels=dict(entry.get("Labels") or {}),
                )
            )
        return candidates
    except (docker.errors.DockerException, requests.exceptions.RequestException) as err:
        raise _Unreachable(str(err)) from None
    finally:
        client.close()


def _run_cli(argv: Sequence[str]) -> str:
    try:
        done = subprocess.run(
            argv, capture_output=True, text=True, timeout=CLI_TIMEOUT_S, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as err:
        raise _Unreachable(f"{argv[0]}: {err}") from None
    if done.returncode != 0:
        raise _Unreachable(f"{' '.join(argv)}: {done.stderr.strip()}")
    return done.stdout


def _containerd_sockets() -> list[str]:
    seen: dict[str, str] = {}
    env = os.environ.get("CONTAINERD_ADDRESS")
    for sock in ([env] if env else []) + list(CONTAINERD_SOCKETS):
        real = os.path.realpath(sock)
        if os.path.exists(real) and real not in seen:
            seen[real] = sock
    return list(seen.values())


def _containerd_labels(ctr: list[str], cid: str) -> dict[str, str]:
    """A containerd container's labels (empty if ``ctr containers info`` fails)."""
    try:
        info = json.loads(_run_cli([*ctr, "containers", "info", cid]))
    except (_Unreachable, ValueError):
        return {}
    return dict(info.get("Labels") or {})


def _containerd_name(labels: dict[str, str], cid: str) -> str:
    """The name a higher layer gave the container (nerdctl, Kubernetes), else its short id."""
    for key in ("nerdctl/name", POD_CONTAINER_LABEL):
        if labels.get(key):
            pod = labels.get(POD_NAME_LABEL)
            return (
                f"{pod}/{labels[key]}" if pod and key.startswith("io.kubernetes") else labels[key]
            )
    return cid[:12]


def _containerd_candidates(known: set[str]) -> list[_Candidate]:
    binary = shutil.which("ctr")
    if binary is None:
        raise _Unreachable("ctr not installed")
    sockets = _containerd_sockets()
    if not sockets:
        raise _Unreachable("no containerd socket")
    candidates: list[_Candidate] = []
    reached = False
    for sock in sockets:
        try:
            namespaces = _run_cli([binary, "-a", sock, "namespaces", "list", "-q"]).split()
        except _Unreachable:
            continue
        reached = True
        for ns in namespaces:
            ctr = [binary, "-a", sock, "-n", ns]
            try:
                ids = _run_cli([*ctr, "containers", "list", "-q"]).split()
                tasks = _parse_ctr_tasks(_run_cli([*ctr, "tasks", "list"]))
            except _Unreachable:
                continue
            for cid in ids:
                if cid in known:  # Docker's own containers sit in the "moby" namespace
                    continue
                pid, status = tasks.get(cid, (0, "created"))
                running = status in ("running", "paused", "pausing")
                labels = _containerd_labels(ctr, cid)
                candidates.append(
                    _Candidate(
                        id=cid,
                        name=_containerd_name(labels, cid),
                        runtime="containerd",
                        state=status,
                        pid=pid if running else 0,
                        aliases=(f"{ns}/{cid}",),
                        labels=labels,
                    )
                )
    if not reached:
        raise _Unreachable("containerd does not answer")
    return candidates


def _parse_ctr_tasks(table: str) -> dict[str, tuple[int, str]]:
    """Map task id → (pid, lower-case status) from ``ctr tasks list``'s TASK PID STATUS rows."""
    tasks: dict[str, tuple[int, str]] = {}
    for line in table.splitlines()[1:]:
        cols = line.split()
        if len(cols) >= 3 and cols[1].isdigit():
            tasks[cols[0]] = (int(cols[1]), cols[2].lower())
    return tasks


def _crio_candidates(known: set[str]) -> list[_Candidate]:
    binary = shutil.which("crictl")
    if binary is None:
        raise _Unreachable("crictl not installed")
    crictl = [binary, "--timeout", "5s"]
    version = _run_cli([*crictl, "version"])
    if "cri-o" not in version.lower():
        raise _Unreachable("crictl talks to a runtime other than CRI-O (asked through ctr)")
    try:
        listed = json.loads(_run_cli([*crictl, "ps", "-a", "-o", "json"])).get("containers") or []
    except ValueError as err:
        raise _Unreachable(f"crictl ps: {err}") from None
    candidates: list[_Candidate] = []
    for entry in listed:
        cid = str(entry.get("id", ""))
        if cid in known:
            continue
        state = str(entry.get("state", "")).removeprefix("CONTAINER_").lower() or "unknown"
        pid = 0
        if state == "running":
            try:
                info = json.loads(_run_cli([*crictl, "inspect", "-o", "json", cid]))
                pid = int((info.get("info") or {}).get("pid") or 0)
            except (_Unreachable, ValueError):
                pid = 0
        labels: dict[str, str] = entry.get("labels") or {}
        name = str((entry.get("metadata") or {}).get("name") or cid[:12])
        pod = labels.get(POD_NAME_LABEL)
        candidates.append(
            _Candidate(
                id=cid,
                name=name,
                runtime="cri-o",
                state=state,
                pid=pid,
                aliases=(f"{pod}/{name}",) if pod else (),
                labels=labels,
            )
        )
    return candidates


def _scan_candidates() -> list[_Candidate]:
    """Containers seen only as 64-hex ids in the cgroup v2 paths of running processes."""
    by_id: dict[str, int] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        rel = cgroup_v2_path_of_pid(int(entry.name))
        if not rel:
            continue
        ids = _FULL_ID.findall(rel)
        if ids:
            # The innermost id names the container (a pod's cgroup holds its containers' ones).
            cid = ids[-1]
            by_id[cid] = min(by_id.get(cid, int(entry.name)), int(entry.name))
    return [
        _Candidate(id=cid, name=cid[:12], runtime="cgroup-scan", state="running", pid=pid)
        for cid, pid in sorted(by_id.items())
    ]


_SOURCES: dict[str, Callable[[set[str]], list[_Candidate]]] = {
    "docker": _docker_candidates,
    "containerd": _containerd_candidates,
    "cri-o": _crio_candidates,
}


def _runtime_candidates(
    runtimes: Iterable[str], *, missing: list[str] | None = None
) -> tuple[list[_Candidate], list[str]]:
    """Every container the given runtimes know (one entry per id), and which runtimes answered.

    ``missing`` collects why a runtime that is running here could not be asked (a library
    swatch needs for it is not installed).
    """
    seen: dict[str, _Candidate] = {}
    answered: list[str] = []
    for runtime in runtimes:
        source = _SOURCES.get(runtime)
        if source is None:
            raise SwatchError(
                f"unknown container runtime {runtime!r} (known: {', '.join(RUNTIMES)})"
            )
        try:
            found = source(set(seen))
        except _DockerSdkMissing as err:
            if missing is not None:
                missing.append(str(err))
            continue
        except _Unreachable:
            continue
        answered.append(runtime)
        for candidate in found:
            seen.setdefault(candidate.id, candidate)  # Docker's containers also sit in containerd
    return list(seen.values()), answered


# --------------------------------------------------------------------------- resolution


def _describe(candidate: _Candidate) -> str:
    if candidate.name and candidate.name != candidate.id[:12]:
        return f"{candidate.name} ({candidate.id[:12]})"
    return candidate.id[:12]


def _match(ref: str, candidates: Sequence[_Candidate]) -> list[_Candidate]:
    """Docker's order: an exact id, then an exact name, then the ids the reference starts."""
    exact = [c for c in candidates if c.id == ref]
    if exact:
        return exact
    named = [c for c in candidates if ref in (c.name, *c.aliases)]
    if named:
        return named
    lowered = ref.lower()
    if not _HEX.fullmatch(lowered):
        return []
    return [c for c in candidates if c.id.startswith(lowered)]


def _pick(ref: str, matches: Sequence[_Candidate]) -> _Candidate:
    if len(matches) > 1:
        listed = ", ".join(_describe(c) for c in sorted(matches, key=lambda c: c.id))
        raise SwatchError(
            f"container reference {ref!r} is ambiguous: it matches {len(matches)} containers "
            f"({listed}); give more of the id or the name"
        )
    chosen = matches[0]
    if not chosen.running:
        raise SwatchError(
            f"container {_describe(chosen)} is not running (state: {chosen.state}); "
            "start it first, swatch traces live processes"
        )
    return chosen


def resolve_container(ref: str, *, runtimes: Sequence[str] = RUNTIMES) -> Container:
    """The running container named by ``ref``: a name, a full id or a unique id prefix.

    ``runtimes`` restricts the runtimes asked (an empty sequence scans cgroups only).
    Raises SwatchError, with a one-line message, for every way this can fail.
    """
    ref = ref.strip()
    if not ref:
        raise SwatchError("empty container reference: give a container name or id")
    root = cgroup_v2_root()
    missing: list[str] = []
    candidates, answered = _runtime_candidates(runtimes, missing=missing)
    matches = _match(ref, candidates)
    if not matches:
        matches = _match(ref, _scan_candidates())
    if not matches:
        if missing:
            raise SwatchError(f"no such container: {ref!r}; {'; '.join(missing)}")
        if not answered:
            asked = ", ".join(runtimes) or "none asked"
            raise SwatchError(
                f"no container runtime reachable ({asked}) and no process is in a cgroup "
                f"whose path holds {ref!r}"
            )
        raise SwatchError(f"no such container: {ref!r} (asked {', '.join(answered)})")
    chosen = _pick(ref, matches)
    return _container_from(chosen, root)


def list_containers(*, runtimes: Sequence[str] = RUNTIMES) -> list[Container]:
    """Every running container the runtimes know, plus any other id-named cgroup with processes."""
    root = cgroup_v2_root()
    candidates, _answered = _runtime_candidates(runtimes)
    known = {c.id for c in candidates}
    candidates += [c for c in _scan_candidates() if c.id not in known]
    containers: list[Container] = []
    for candidate in candidates:
        if not candidate.running:
            continue
        try:
            containers.append(_container_from(candidate, root))
        except SwatchError:
            continue  # exited while we looked
    return sorted(containers, key=lambda c: (c.name, c.id))


# --------------------------------------------------------------------------- event enrichment


class _CgroupNames:
    """cgroup id → (short id, name) and → the pod's names, refreshed from the runtimes when an
    unknown id shows up.

    An id still unknown after a refresh is remembered as a miss for ``miss_ttl_s`` so that host
    processes (in no container) do not make every lookup ask the runtimes again.
    """

    def __init__(self, min_refresh_s: float = 2.0, miss_ttl_s: float = 30.0) -> None:
        self._names: dict[int, tuple[str, str]] = {}
        self._pods: dict[int, PodNames] = {}
        self._misses: dict[int, float] = {}
        self._last_refresh = float("-inf")
        self._min_refresh_s = min_refresh_s
        self._miss_ttl_s = miss_ttl_s
        self._lock = threading.Lock()

    def lookup(self, ids: Iterable[int]) -> dict[int, tuple[str, str]]:
        wanted = set(ids)
        with self._lock:
            now = time.monotonic()
            unknown = {
                i
                for i in wanted - self._names.keys()
                if now - self._misses.get(i, float("-inf")) >= self._miss_ttl_s
            }
            if unknown and now - self._last_refresh >= self._min_refresh_s:
                self._refresh()
                self._last_refresh = now
                self._misses.update((i, now) for i in unknown - self._names.keys())
            return {i: self._names[i] for i in wanted if i in self._names}

    def pods(self, ids: Iterable[int]) -> dict[int, PodNames]:
        wanted = set(ids)
        known = self.lookup(wanted)
        with self._lock:
            return {i: self._pods[i] for i in known if i in self._pods}

    def _refresh(self) -> None:
        try:
            containers = list_containers()
        except SwatchError:
            return
        names: dict[int, tuple[str, str]] = {}
        pods: dict[int, PodNames] = {}
        for c in containers:
            for cgroup_id in _subcgroup_ids(c.cgroup_path):
                names[cgroup_id] = (c.short_id, c.name)
                if c.kubernetes is not None:
                    pods[cgroup_id] = c.kubernetes
        self._names = names
        self._pods = pods

    def clear(self) -> None:
        with self._lock:
            self._names.clear()
            self._pods.clear()
            self._misses.clear()
            self._last_refresh = float("-inf")


_cgroup_names = _CgroupNames()


def container_of_cgroup_id(ids: Iterable[int]) -> dict[int, tuple[str, str]]:
    """For the cgroup ids that belong to a running container: id → (short id, name).

    Cached; an id not seen before triggers at most one runtime query every two seconds. Cgroups
    nested inside a container's cgroup map to that container too.
    """
    return _cgroup_names.lookup(ids)


def pod_of_cgroup_id(ids: Iterable[int]) -> dict[int, PodNames]:
    """For the cgroup ids of running containers that are in a Kubernetes pod: id → its names.

    The same cache as ``container_of_cgroup_id``.
    """
    return _cgroup_names.pods(ids)


def clear_container_cache() -> None:
    """Forget what ``container_of_cgroup_id`` learnt (tests, or after many containers changed)."""
    _cgroup_names.clear()
