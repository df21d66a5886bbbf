"""deploy/kubernetes/: the manifest is valid Kubernetes (kubernetes-validate, the schemas it
bundles), and the image deploy/Dockerfile builds — made here from Debian packages, no registry —
run under the real dockerd with exactly the manifest's securityContext, hostPID, mounts, command
and environment, traces a host process, serves its exact counts on /metrics and writes its
events to the node's /var/lib/swatch. Kubernetes pod/namespace/container names reach the events
of a container carrying the runtime's io.kubernetes.* labels, in Docker and (through the image's
ctr) in a real containerd.

What cannot exist here and so is not run: a kubelet. The Docker run stands in for it: every
field of the pod spec that would change how the container runs is turned into `docker run`
arguments, and a field this test does not know how to turn is a failure, not a skip. The host
path of /var/lib/swatch is a temporary directory (the test must not write the machine's), and
the pin directories are the test's own (SWATCH_PIN_DIR, SWATCH_POLICY_PIN_DIR added to the
manifest's env): the only two departures from the manifest — and, for the containerd node, the
host side of /run: a directory holding a real containerd's socket where a node has it.

The base image (swatch-base:debian12-<hash>, tools/build_image.py --base debootstrap) is kept
between runs so a warm run skips debootstrap; the swatch image and its containers are removed.
"""

from __future__ import annotations

import copy
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from conftest import (ROOT, SWATCH, events_until, new_pin_dir, read_audit, read_events, stop,
                      swatch, wait_for, watching)
from syscall_watcher.targets.containers import cgroup_v2_root
from test_containers import IMAGE, docker, docker_env  # noqa: F401 (a fixture)

MANIFEST = ROOT / "deploy" / "kubernetes" / "daemonset.yaml"
BUILD_IMAGE = ROOT / "tools" / "build_image.py"
STATE_DIR = "/var/lib/swatch"
METRICS_PORT = 9464
# What the image needs from the node; the run below shows it is enough.
REQUIRED_MOUNTS = {"/sys/fs/bpf", "/sys/kernel/btf", "/sys/fs/cgroup", STATE_DIR}


def manifest_docs() -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(MANIFEST.read_text()) if d]


def daemonset(docs: list[dict[str, Any]]) -> dict[str, Any]:
    (ds,) = [d for d in docs if d["kind"] == "DaemonSet"]
    return ds


def pod_spec(ds: dict[str, Any]) -> dict[str, Any]:
    return ds["spec"]["template"]["spec"]


def swatch_container(ds: dict[str, Any]) -> dict[str, Any]:
    (container,) = pod_spec(ds)["containers"]
    return container


# --------------------------------------------------------------------------- the manifest


# 1.30: the first with securityContext.appArmorProfile
@pytest.mark.parametrize("version", ["1.30.0", kubernetes_validate.latest_version()])
def test_manifest_is_valid_kubernetes(version: str) -> None:
    docs = manifest_docs()
    assert [d["kind"] for d in docs] == ["Namespace", "ServiceAccount", "DaemonSet", "Service"]
    for doc in docs:
        kubernetes_validate.validate(doc, version, strict=True)  # raises on any error


def test_validation_catches_a_misspelt_key() -> None:
    """The validator would catch a broken manifest: the same DaemonSet, one key misspelt."""
    ds = copy.deepcopy(daemonset(manifest_docs()))
    context = swatch_container(ds)["securityContext"]
    context["capabilites"] = context.pop("capabilities")
    with pytest.raises(kubernetes_validate.ValidationError, match="capabilites"):
        kubernetes_validate.validate(ds, kubernetes_validate.latest_version(), strict=True)


def test_manifest_wiring() -> None:
    """The Service finds the pods and the port serve listens on; the node mounts are there."""
    docs = manifest_docs()
    ds = daemonset(docs)
    (service,) = [d for d in docs if d["kind"] == "Service"]
    (account,) = [d for d in docs if d["kind"] == "ServiceAccount"]
    spec = pod_spec(ds)
    container = swatch_container(ds)
    labels = ds["spec"]["template"]["metadata"]["labels"]
    assert ds["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert service["spec"]["selector"].items() <= labels.items()
    assert spec["serviceAccountName"] == account["metadata"]["name"]
    assert {d["metadata"]["namespace"] for d in docs[1:]} == {docs[0]["metadata"]["name"]}
    args = container["args"]
    assert container["command"] == ["swatch"] and args[0] == "serve"
    listen = args[args.index("--metrics") + 1]
    assert listen == f"0.0.0.0:{METRICS_PORT}"
    (port,) = container["ports"]
    assert port["containerPort"] == METRICS_PORT
    assert service["spec"]["ports"][0]["targetPort"] == port["name"]
    for annotated in (service["metadata"], ds["spec"]["template"]["metadata"]):
        notes = annotated["annotations"]
        assert notes["prometheus.io/scrape"] == "true"
        assert notes["prometheus.io/port"] == str(METRICS_PORT)
        assert notes["prometheus.io/path"] == "/metrics"
    assert spec["hostPID"] is True
    assert "SYS_ADMIN" in container["securityContext"]["capabilities"]["add"]  # bpf()
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    assert REQUIRED_MOUNTS <= mounts, REQUIRED_MOUNTS - mounts
    assert args[args.index("--json-log") + 1].startswith(STATE_DIR + "/")


# --------------------------------------------------------------------------- manifest → docker run

POD_KEYS = {"serviceAccountName", "automountServiceAccountToken", "hostPID", "hostNetwork",
            "hostIPC", "tolerations", "terminationGracePeriodSeconds", "containers", "volumes",
            "securityContext"}
CONTAINER_KEYS = {"name", "image", "imagePullPolicy", "command", "args", "env", "ports",
                  "readinessProbe", "livenessProbe", "resources", "securityContext",
                  "volumeMounts"}


def docker_run_args(ds: dict[str, Any], image: str, *, host_paths: dict[str, str],
                    extra_env: dict[str, str]) -> list[str]:
    """`docker run` arguments (after `run`) that run ``image`` as the manifest's pod would.

    ``host_paths`` replaces hostPath sources (the test's stand-in for /var/lib/swatch). A pod
    or container field this function cannot express is an AssertionError, so a manifest change
    cannot slip past the test unrun.
    """
    spec = pod_spec(ds)
    container = swatch_container(ds)
    assert set(spec) <= POD_KEYS, f"pod fields not turned into docker run: {set(spec) - POD_KEYS}"
    assert set(container) <= CONTAINER_KEYS, set(container) - CONTAINER_KEYS
    assert not spec.get("securityContext"), "pod securityContext: not turned into docker run"
    args: list[str] = []
    for key, flag in (("hostPID", "--pid=host"), ("hostNetwork", "--network=host"),
                      ("hostIPC", "--ipc=host")):
        if spec.get(key):
            args.append(flag)
    context = dict(container.get("securityContext") or {})
    if context.pop("privileged", False):
        args.append("--privileged")
    if context.pop("readOnlyRootFilesystem", False):
        args.append("--read-only")
    caps = context.pop("capabilities", {})
    args += [f"--cap-add={c}" for c in caps.get("add", [])]
    args += [f"--cap-drop={c}" for c in caps.get("drop", [])]
    if context.pop("allowPrivilegeEscalation", True) is False:
        args.append("--security-opt=no-new-privileges")
    seccomp = context.pop("seccompProfile", {"type": "RuntimeDefault"})["type"]
    assert seccomp in ("RuntimeDefault", "Unconfined"), seccomp
    if seccomp == "Unconfined":
        args.append("--security-opt=seccomp=unconfined")  # RuntimeDefault: Docker's default
    apparmor = context.pop("appArmorProfile", {"type": "RuntimeDefault"})["type"]
    assert apparmor in ("RuntimeDefault", "Unconfined"), apparmor
    if apparmor == "Unconfined":
        args.append("--security-opt=apparmor=unconfined")
    if "runAsUser" in context:
        args.append(f"--user={context.pop('runAsUser')}:{context.pop('runAsGroup', 0)}")
    assert not context, f"securityContext fields not turned into docker run: {context}"
    volumes = {v["name"]: v for v in spec.get("volumes", [])}
    for mount in container.get("volumeMounts", []):
        assert set(mount) <= {"name", "mountPath", "readOnly"}, mount
        volume = volumes[mount["name"]]
        assert set(volume) == {"name", "hostPath"}, f"only hostPath volumes run here: {volume}"
        source = host_paths.get(volume["hostPath"]["path"], volume["hostPath"]["path"])
        kind = volume["hostPath"].get("type", "")
        if kind == "DirectoryOrCreate":
            os.makedirs(source, mode=0o755, exist_ok=True)
        else:
            assert kind == "Directory" and os.path.isdir(source), (kind, source)
        ro = ",readonly" if mount.get("readOnly") else ""
        args.append(f"--mount=type=bind,source={source},target={mount['mountPath']}{ro}")
    env = {e["name"]: e["value"] for e in container.get("env", [])}
    for name, value in {**env, **extra_env}.items():
        args.append(f"--env={name}={value}")
    command = container.get("command") or []
    if command:
        args.append(f"--entrypoint={command[0]}")
    return [*args, image, *command[1:], *container.get("args", [])]


# --------------------------------------------------------------------------- the image, run


@pytest.fixture(scope="module")
def image(docker_env: None) -> Iterator[str]:  # noqa: F811 (the imported fixture)
    """The swatch image built from this checkout; removed, with every layer it added, after."""
    tag = f"swatch-test-k8s:{secrets.token_hex(4)}"
    done = subprocess.run([sys.executable, str(BUILD_IMAGE), "--tag", tag, "--base",
                           "debootstrap"], capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == tag
    base = docker("image", "inspect", "-f", '{{index .Config.Labels "org.swatch.base"}}', tag)
    base_layers = set(docker("history", "-q", base).split())
    ours = [i for i in docker("history", "-q", tag).split() if i != "<missing>"]
    try:
        yield tag
    finally:
        docker("rmi", tag)
        left = [i for i in ours if i not in base_layers and subprocess.run(
            ["docker", "image", "inspect", i], capture_output=True).returncode == 0]
        assert not left, f"image layers left behind: {left}"


def scrape(container_pid: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """/metrics of serve inside the container's network namespace (the pod network)."""
    get = (f"import sys, urllib.request; sys.stdout.write(urllib.request.urlopen("
           f"'http://127.0.0.1:{METRICS_PORT}/metrics', timeout=5).read().decode())")
    done = subprocess.run(["nsenter", f"--net=/proc/{container_pid}/ns/net", "--",
                           sys.executable, "-c", get], capture_output=True, text=True,
                          timeout=30, check=False)
    assert done.returncode == 0, done.stderr
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(done.stdout) for s in family.samples}


def logs(name: str) -> str:
    done = subprocess.run(["docker", "logs", name], capture_output=True, text=True, timeout=30)
    return done.stdout + done.stderr


def test_image_traces_a_host_process_serves_metrics_and_logs(  # type: ignore[no-untyped-def]
        image: str, workload, tmp_path: Path) -> None:
    n, m, k = 250, 4096, 17
    state = tmp_path / "state"
    pins = new_pin_dir("k8s")
    policy_pins = new_pin_dir("k8s-policy")
    name = f"swatch-test-k8s-{secrets.token_hex(4)}"
    run_args = docker_run_args(
        daemonset(manifest_docs()), image, host_paths={STATE_DIR: str(state)},
        extra_env={"SWATCH_PIN_DIR": str(pins), "SWATCH_POLICY_PIN_DIR": str(policy_pins)})
    held = subprocess.Popen([workload("counts"), str(n), str(m), str(k)], stdin=subprocess.PIPE)
    try:
        docker("run", "-d", "--name", name, *run_args)
        assert wait_for(lambda: "nothing pinned" in logs(name), timeout=60), logs(name)
        # Loaded from inside the pod: its swatch, privileges and the node's pid namespace.
        loaded = docker("exec", name, "swatch", "load", "--pid", str(held.pid))
        assert f"pid {held.pid}" in loaded
        assert (pins / "links").is_dir()  # pinned in the node's bpffs
        assert wait_for(lambda: "attached to the tracer" in logs(name), timeout=30), logs(name)
        assert held.stdin is not None
        held.stdin.write(b"g")
        held.stdin.close()
        assert held.wait(timeout=30) == 0
        pid = int(docker("inspect", "-f", "{{.State.Pid}}", name))
        metrics = scrape(pid)
        target = ("target", f"pid {held.pid}")

        def sample(metric: str, syscall: str) -> float:
            return metrics[(metric, tuple(sorted([("syscall", syscall), target])))]

        assert sample("swatch_syscalls_total", "read") == n
        assert sample("swatch_syscall_read_bytes_total", "read") == n * m
        assert sample("swatch_syscall_errors_total", "read") == 0
        assert sample("swatch_syscalls_total", "openat") == k + 1
        assert sample("swatch_syscall_errors_total", "openat") == k
        assert metrics[("swatch_tracer_loaded", (target,))] == 1
        # The event log on the node: every read the workload made, one JSON line each.
        log = state / "events.jsonl"

        def reads() -> list[dict]:  # type: ignore[type-arg]
            if not log.exists():
                return []
            return [e for e in read_events(log)
                    if e.get("syscall") == "read" and e["pid"] == held.pid]

        assert wait_for(lambda: len(reads()) == n, timeout=30), (len(reads()), logs(name))
        assert {e["bytes"] for e in reads()} == {m}
        failed = [e for e in read_events(log) if e.get("path") == "/nonexistent/swatch-counts"]
        assert len(failed) == k and {e["error"] for e in failed} == {"ENOENT"}
        unloaded = subprocess.run(["docker", "exec", name, "swatch", "unload"],
                                  capture_output=True, text=True, timeout=60)
        assert unloaded.returncode == 0, unloaded.stderr
        assert not pins.exists()
        # SIGTERM (what the kubelet sends): serve drains and exits 0.
        docker("stop", "-t", "30", name)
        assert docker("inspect", "-f", "{{.State.ExitCode}}", name) == "0", logs(name)
    finally:
        if held.poll() is None:
            held.kill()
            held.wait()
        docker("rm", "-f", "-v", name, check=False)  # also one created but not started
        for d in (pins, policy_pins):
            if d.exists():
                swatch("unload", "--pin-dir", str(d))
                swatch("policy-unload", "--pin-dir", str(d))
    assert not pins.exists() and not policy_pins.exists()
    assert not docker("ps", "-aq", "--filter", f"name={name}")


# --------------------------------------------------------------------------- Kubernetes names


K8S_LABELS = {"io.kubernetes.pod.name": "web-7d4b9c-x2x9q",
              "io.kubernetes.pod.namespace": "shop",
              "io.kubernetes.container.name": "nginx"}


@pytest.fixture
def pod_container(docker_env: None) -> Iterator[tuple[str, str]]:  # noqa: F811
    """A running container labelled as the kubelet labels a pod's container: (id, name)."""
    name = f"swatch-test-k8s-pod-{secrets.token_hex(4)}"
    labels = [f"--label={k}={v}" for k, v in K8S_LABELS.items()]
    cid = docker("run", "-d", "--name", name, *labels, IMAGE, "sleep", "600")
    try:
        yield cid, name
    finally:
        docker("rm", "-f", "-v", cid, check=False)


def _watch(pin_dir: Path, out: Path, *json: str) -> subprocess.Popen:  # type: ignore[type-arg]
    return subprocess.Popen([SWATCH, "watch", *json, "-o", str(out), "--duration", "60",
                             "--pin-dir", str(pin_dir)], stderr=subprocess.PIPE, text=True)


def test_kubernetes_names_on_a_pods_events(pod_container: tuple[str, str], pin_dir: Path,
                                           tmp_path: Path) -> None:
    cid, name = pod_container
    want = {"namespace": "shop", "pod": "web-7d4b9c-x2x9q", "container": "nginx"}
    listed = swatch("containers", "--json", check=True)
    (mine,) = [c for c in json.loads(listed.stdout) if c["id"] == cid]
    assert mine["kubernetes"] == want
    swatch("load", "--container", name, "--filter", "minimal", "--pin-dir", str(pin_dir),
           check=True)
    # JSON lines: every event of the container carries the pod's names.
    out = tmp_path / "pod.jsonl"
    w = _watch(pin_dir, out, "--json")
    try:
        watching(pin_dir, w)
        docker("exec", cid, "cat", "/etc/hostname")
        events_until(out, lambda ev: any(e.get("path") == "/etc/hostname" for e in ev))
    finally:
        assert stop(w) == 0, w.stderr.read() if w.stderr else ""
    events = read_events(out)  # each validated against the record schema
    (opened,) = [e for e in events if e.get("path") == "/etc/hostname"]
    assert opened["comm"] == "cat"
    assert opened["container"] == f"{cid[:12]} ({name})"
    assert opened["kubernetes"] == want
    assert all(e["kubernetes"] == want for e in events if "pid" in e), events
    # Human lines: the same names in the container's bracket.
    human = tmp_path / "pod.txt"
    w = _watch(pin_dir, human)
    try:
        watching(pin_dir, w)
        docker("exec", cid, "cat", "/etc/hostname")
        assert wait_for(lambda: "/etc/hostname" in human.read_text(), timeout=15)
    finally:
        assert stop(w) == 0, w.stderr.read() if w.stderr else ""
    (line,) = [x for x in human.read_text().splitlines() if "/etc/hostname" in x and "OPEN" in x]
    assert (f"[{cid[:12]} ({name}) pod=shop/web-7d4b9c-x2x9q container=nginx] OPEN"
            in line), line
    # swatch serve's JSON log (what a DaemonSet ships) and audit log: the same names.
    log, err, audit = tmp_path / "serve.jsonl", tmp_path / "serve.err", tmp_path / "audit"
    serve = subprocess.Popen([SWATCH, "serve", "--pin-dir", str(pin_dir), "--policy-pin-dir",
                              str(tmp_path / "no-policy"), "--json-log", str(log),
                              "--audit-dir", str(audit), "--events", "openat"],
                             stdout=subprocess.DEVNULL, stderr=err.open("w"))
    try:
        assert wait_for(lambda: "attached to the tracer" in err.read_text(), timeout=15), \
            err.read_text()
        docker("exec", cid, "cat", "/etc/hostname")
        events_until(log, lambda ev: any(e.get("path") == "/etc/hostname" for e in ev))
    finally:
        serve.terminate()
        assert serve.wait(timeout=30) == 0, err.read_text()
    (served,) = [e for e in read_events(log) if e.get("path") == "/etc/hostname"]
    assert (served["container"], served["kubernetes"]) == (f"{cid[:12]} ({name})", want)
    (audited,) = [r["event"] for r in read_audit(audit) if r.get("kind") == "event"
                  and r["event"].get("path") == "/etc/hostname"]
    assert audited["kubernetes"] == want


def test_image_writes_the_audit_log(image: str, pod_container: tuple[str, str],
                                    tmp_path: Path) -> None:
    """serve's audit log (--audit-dir /var/lib/swatch/audit, on the node's /var/lib/swatch)
    records a tracer loaded inside the pod and its unload right before `docker stop`, then
    stops with a checkpoint over every record, and verifies with the host's swatch. In the
    pod, containers are named through the node's runtime socket (Docker here, through the
    manifest's /host/run mount); with no runtime that answers (a CRI-O node: the image has no
    crictl) they are found by cgroup id only, without pod names."""
    usage = docker("run", "--rm", "--entrypoint", "swatch", image, "serve", "--help")
    if "--audit-dir" not in usage:
        pytest.skip("this checkout's serve has no --audit-dir (issue 14's audit feed)")
    state = tmp_path / "state"
    pins = new_pin_dir("k8s-audit")
    policy_pins = new_pin_dir("k8s-audit-policy")
    name = f"swatch-test-k8s-{secrets.token_hex(4)}"
    run_args = docker_run_args(
        daemonset(manifest_docs()), image, host_paths={STATE_DIR: str(state)},
        extra_env={"SWATCH_PIN_DIR": str(pins), "SWATCH_POLICY_PIN_DIR": str(policy_pins)})
    sleeper = subprocess.Popen(["sleep", "300"])
    try:
        docker("run", "-d", "--name", name, *run_args)
        assert wait_for(lambda: "nothing pinned" in logs(name), timeout=60), logs(name)
        cid = pod_container[0]
        listed = json.loads(docker("exec", name, "swatch", "containers", "--json"))
        (mine,) = [c for c in listed if c["id"] == cid]
        assert (mine["runtime"], mine["kubernetes"]) == ("docker", {
            "namespace": "shop", "pod": "web-7d4b9c-x2x9q", "container": "nginx"})
        listed = json.loads(docker("exec", "--env", "DOCKER_HOST=unix:///nonexistent.sock",
                                   name, "swatch", "containers", "--json"))
        (mine,) = [c for c in listed if c["id"] == cid]
        assert (mine["runtime"], mine["name"]) == ("cgroup-scan", cid[:12])
        assert "kubernetes" not in mine
        docker("exec", name, "swatch", "load", "--pid", str(sleeper.pid))
        assert wait_for(lambda: "attached to the tracer" in logs(name), timeout=30), logs(name)
        docker("exec", name, "swatch", "unload")
        assert not pins.exists()
        docker("stop", "-t", "30", name)  # at once: serve may not have looked at the pins yet
        assert docker("inspect", "-f", "{{.State.ExitCode}}", name) == "0", logs(name)
    finally:
        sleeper.kill()
        sleeper.wait()
        docker("rm", "-f", "-v", name, check=False)
        for d in (pins, policy_pins):
            if d.exists():
                swatch("unload", "--pin-dir", str(d))
                swatch("policy-unload", "--pin-dir", str(d))
    audit = state / "audit"
    verified = swatch("audit", "verify", "--audit-dir", str(audit))
    assert verified.returncode == 0, verified.stdout + verified.stderr
    shown = swatch("audit", "show", "--audit-dir", str(audit), "--json", check=True)
    records = [json.loads(line) for line in shown.stdout.splitlines() if line.strip()]
    tracer = [(r["action"], r["detail"].get("target")) for r in records
              if r.get("kind") == "lifecycle" and r.get("component") == "tracer"]
    assert tracer == [("load", f"pid {sleeper.pid}"), ("unload", f"pid {sleeper.pid}")], records
    assert [r["what"] for r in records if r["kind"] == "log"] == ["start", "stop"]
    last = json.loads((audit / "checkpoints.jsonl").read_bytes().splitlines()[-1])
    assert last["size"] == len(records)  # signed at shutdown, over every record


# --------------------------------------------------------------------------- a containerd node

CTR_NAMESPACE = "k8s.io"  # where the kubelet's CRI calls put a node's containers
CONTAINERD_CONFIG = """\
version = 2
# no CRI (it wants CNI and a sandbox image) and no snapshotter this test does not use: the
# container below runs on a plain root file system directory (ctr run --rootfs)
disabled_plugins = ["io.containerd.grpc.v1.cri", "io.containerd.snapshotter.v1.btrfs",
                    "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.aufs",
                    "io.containerd.snapshotter.v1.devmapper"]
"""


def _busybox_rootfs(root: Path) -> None:
    """A root file system with the machine's busybox-static (as tests/docker-env.sh makes)."""
    (root / "bin").mkdir(parents=True)
    for d in ("dev", "proc", "sys", "tmp", "etc"):
        (root / d).mkdir()
    (root / "etc" / "hostname").write_text("swatch-containerd-pod\n")
    subprocess.run(["cp", "/bin/busybox", str(root / "bin" / "busybox")], check=True)
    for applet in ("sh", "sleep", "cat"):
        (root / "bin" / applet).symlink_to("busybox")


class ContainerdNode:
    """A real containerd (the machine's, from Debian's containerd package) with its socket at
    <node run>/containerd/containerd.sock — the node's /run as the manifest mounts it — and one
    running container labelled as the kubelet labels a pod's container."""

    def __init__(self, top: Path) -> None:
        self.run_dir = top / "run"
        self.socket = self.run_dir / "containerd" / "containerd.sock"
        self.log = top / "containerd.log"
        config = top / "config.toml"
        config.write_text(CONTAINERD_CONFIG)
        self.rootfs = top / "rootfs"
        _busybox_rootfs(self.rootfs)
        self.proc = subprocess.Popen(
            ["containerd", "--config", str(config), "--address", str(self.socket),
             "--root", str(top / "root"), "--state", str(top / "state")],
            stdout=subprocess.DEVNULL, stderr=self.log.open("w"))
        self.cid = secrets.token_hex(32)  # CRI ids are 64 hex digits
        self.shim = 0

    def ctr(self, *args: str, check: bool = True) -> str:
        done = subprocess.run(["ctr", "--address", str(self.socket), "--namespace",
                               CTR_NAMESPACE, *args], capture_output=True, text=True,
                              timeout=60, check=False)
        if check and done.returncode != 0:
            raise AssertionError(f"ctr {' '.join(args)}: {done.stderr.strip()}")
        return done.stdout

    def up(self) -> bool:
        return self.proc.poll() is None and self.socket.exists() and subprocess.run(
            ["ctr", "--address", str(self.socket), "version"], capture_output=True,
            timeout=30, check=False).returncode == 0

    def start_pod_container(self) -> int:
        labels = [f"--label={k}={v}" for k, v in K8S_LABELS.items()]
        # no image, so no image PATH in the spec: commands by absolute path
        self.ctr("run", "-d", *labels, "--rootfs", str(self.rootfs), self.cid,
                 "/bin/sleep", "600")
        (line,) = [x for x in self.ctr("tasks", "list").splitlines() if x.startswith(self.cid)]
        pid = int(line.split()[1])
        self.shim = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        return pid

    def close(self) -> None:
        if self.proc.poll() is None:
            self.ctr("tasks", "kill", "--signal", "SIGKILL", self.cid, check=False)
            wait_for(lambda: "STOPPED" in self.ctr("tasks", "list", check=False)
                     or self.cid not in self.ctr("tasks", "list", check=False), timeout=15)
            self.ctr("tasks", "delete", self.cid, check=False)
            self.ctr("containers", "delete", self.cid, check=False)
            self.proc.terminate()  # by its pid (Popen)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        # a shim outlives its containerd by design; this one is ours (its task's parent)
        if self.shim and Path(f"/proc/{self.shim}").exists() and "containerd-shim" in \
                Path(f"/proc/{self.shim}/cmdline").read_bytes().decode(errors="replace"):
            os.kill(self.shim, 9)
            wait_for(lambda: not Path(f"/proc/{self.shim}").exists(), timeout=10)


@pytest.fixture
def containerd_node(docker_env: None) -> Iterator[ContainerdNode]:  # noqa: F811
    """A containerd node's /run with a pod's container running in containerd; removed after."""
    top = Path(tempfile.mkdtemp(prefix="swk8s-", dir="/tmp"))  # short: a socket path
    node = ContainerdNode(top)
    try:
        assert wait_for(node.up, timeout=30), node.log.read_text()
        yield node
    finally:
        node.close()
        shutil.rmtree(top, ignore_errors=True)


def test_image_names_a_containerd_nodes_pods(image: str, containerd_node: ContainerdNode,
                                             tmp_path: Path) -> None:
    """On a containerd node (no Docker): the image's `ctr` (Debian's containerd package), on
    the node's socket through the manifest's /host/run mount and CONTAINERD_ADDRESS, names a
    pod's container; `load --container` by its pod/container name inside the pod, and the
    container's events in the node's events.jsonl carry the pod's names. The pod runs in its
    own cgroup namespace, as the kubelet's pods do on cgroup v2 nodes: /proc/<pid>/cgroup
    names the other container's cgroup as /../<id>, which swatch places in the node's
    hierarchy mounted at /sys/fs/cgroup."""
    node = containerd_node
    init = node.start_pod_container()
    state = tmp_path / "state"
    pins = new_pin_dir("k8s-ctrd")
    policy_pins = new_pin_dir("k8s-ctrd-policy")
    name = f"swatch-test-k8s-{secrets.token_hex(4)}"
    # The node's /run is the containerd node's: its containerd.sock, no docker.sock.
    run_args = ["--cgroupns=private", *docker_run_args(
        daemonset(manifest_docs()), image,
        host_paths={STATE_DIR: str(state), "/run": str(node.run_dir)},
        extra_env={"SWATCH_PIN_DIR": str(pins), "SWATCH_POLICY_PIN_DIR": str(policy_pins)})]
    want = {"namespace": "shop", "pod": "web-7d4b9c-x2x9q", "container": "nginx"}
    try:
        docker("run", "-d", "--name", name, *run_args)
        assert wait_for(lambda: "nothing pinned" in logs(name), timeout=60), logs(name)
        listed = json.loads(docker("exec", name, "swatch", "containers", "--json"))
        (mine,) = [c for c in listed if c["id"] == node.cid]
        assert (mine["runtime"], mine["name"], mine["kubernetes"]) == (
            "containerd", "web-7d4b9c-x2x9q/nginx", want), mine
        assert init in mine["pids"]
        # the node's cgroup of the container, though the pod's own namespace hides it
        assert docker("exec", name, "grep", "^0::/\\.\\./", f"/proc/{init}/cgroup")
        host_rel = Path(f"/proc/{init}/cgroup").read_text().split("0::", 1)[1].split()[0]
        assert mine["cgroup_id"] == os.stat(f"{cgroup_v2_root()}{host_rel}").st_ino
        docker("exec", name, "swatch", "load", "--container", "web-7d4b9c-x2x9q/nginx",
               "--filter", "minimal")
        assert wait_for(lambda: "attached to the tracer" in logs(name), timeout=30), logs(name)
        log = state / "events.jsonl"

        def opened() -> list[dict]:  # type: ignore[type-arg]
            return [e for e in read_events(log) if e.get("path") == "/etc/hostname"] \
                if log.exists() else []

        node.ctr("tasks", "exec", "--exec-id", f"cat-{secrets.token_hex(4)}", node.cid,
                 "/bin/cat", "/etc/hostname")
        assert wait_for(lambda: len(opened()) == 1, timeout=30), logs(name)
        (event,) = opened()
        assert event["comm"] == "cat"
        assert event["container"] == f"{node.cid[:12]} (web-7d4b9c-x2x9q/nginx)"
        assert event["kubernetes"] == want
        docker("exec", name, "swatch", "unload")
        assert not pins.exists()
        docker("stop", "-t", "30", name)
        assert docker("inspect", "-f", "{{.State.ExitCode}}", name) == "0", logs(name)
    finally:
        docker("rm", "-f", "-v", name, check=False)
        for d in (pins, policy_pins):
            if d.exists():
                swatch("unload", "--pin-dir", str(d))
                swatch("policy-unload", "--pin-dir", str(d))
    assert not pins.exists() and not policy_pins.exists()
