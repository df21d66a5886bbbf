"""OCI (Docker, runc, podman) seccomp profiles: the document `swatch record` writes, and the
reader `swatch run --seccomp FILE` uses to build the same filter with libseccomp.

A profile is the `linux.seccomp` object of the OCI runtime spec, as `docker run --security-opt
seccomp=FILE` takes it: `defaultAction`, `defaultErrnoRet`, `architectures` (or Docker's
`archMap`), `flags`, and `syscalls`, a list of rules `{names, action, errnoRet, args, includes,
excludes, comment}`. Every mistake is one line naming the file and the key (or, for bad JSON,
file:line:column)."""

from __future__ import annotations

import difflib
import errno
import json
import os
import platform
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from syscall_watcher.data import DATA_DIR
from syscall_watcher.errors import SwatchError

#: uname -m → the native architecture and the compat ones its kernel also runs, in the order
#: Docker's default profile (moby profiles/seccomp, archMap) lists them.
ARCHITECTURES: dict[str, tuple[str, ...]] = {
    "x86_64": ("SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"),
    "aarch64": ("SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"),
    "mips64": ("SCMP_ARCH_MIPS64", "SCMP_ARCH_MIPS", "SCMP_ARCH_MIPS64N32"),
    "s390x": ("SCMP_ARCH_S390X", "SCMP_ARCH_S390"),
    "ppc64le": ("SCMP_ARCH_PPC64LE",),
    "riscv64": ("SCMP_ARCH_RISCV64",),
}
#: Docker's `includes/excludes.arches` words for this machine.
_ARCH_WORDS: dict[str, frozenset[str]] = {
    "x86_64": frozenset({"amd64", "x86_64"}),
    "aarch64": frozenset({"arm64", "aarch64"}),
    "mips64": frozenset({"mips64"}),
    "s390x": frozenset({"s390x"}),
    "ppc64le": frozenset({"ppc64le"}),
    "riscv64": frozenset({"riscv64"}),
}
ACTIONS = ("SCMP_ACT_ALLOW", "SCMP_ACT_ERRNO", "SCMP_ACT_KILL", "SCMP_ACT_KILL_THREAD",
           "SCMP_ACT_KILL_PROCESS", "SCMP_ACT_TRAP", "SCMP_ACT_TRACE", "SCMP_ACT_LOG",
           "SCMP_ACT_NOTIFY")
OPS = ("SCMP_CMP_NE", "SCMP_CMP_LT", "SCMP_CMP_LE", "SCMP_CMP_EQ", "SCMP_CMP_GE", "SCMP_CMP_GT",
       "SCMP_CMP_MASKED_EQ")
_TOP_KEYS = frozenset({"defaultAction", "defaultErrnoRet", "architectures", "archMap",
                       "syscalls", "flags", "listenerPath", "listenerMetadata"})
_RULE_KEYS = frozenset({"names", "name", "action", "errnoRet", "args", "includes",
                        "excludes", "comment"})
_ARG_KEYS = frozenset({"index", "value", "valueTwo", "op"})
_FLAGS = ("SECCOMP_FILTER_FLAG_TSYNC", "SECCOMP_FILTER_FLAG_LOG",
          "SECCOMP_FILTER_FLAG_SPEC_ALLOW", "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV")
#: capability(7) numbers, for `includes/excludes.caps` (CMD's effective set decides).
CAPABILITIES = (
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID",
    "CAP_KILL", "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE", "CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_IPC_LOCK",
    "CAP_IPC_OWNER", "CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_CHROOT", "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE", "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE", "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL", "CAP_SETFCAP", "CAP_MAC_OVERRIDE", "CAP_MAC_ADMIN", "CAP_SYSLOG",
    "CAP_WAKE_ALARM", "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ", "CAP_PERFMON", "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
)
#: Syscalls that never return (so never reach sys_exit, where swatch counts): every process
#: ends with one of them or by a signal; a recorded profile always allows them.
NEVER_RETURN = ("exit", "exit_group")


def seccomp_binding() -> Any:
    """libseccomp's Python binding: pyseccomp (pip), else python3-seccomp (Debian)."""
    try:
        import pyseccomp as seccomp
    except ImportError:
        try:
            import seccomp  # type: ignore[no-redef]
        except ImportError:
            raise SwatchError("seccomp needs libseccomp's Python binding: pip install "
                              "pyseccomp (or apt-get install python3-seccomp)") from None
    return seccomp


def machine() -> str:
    return platform.machine()


def architectures(mach: str | None = None) -> list[str]:
    """This machine's native SCMP_ARCH_ and the compat ones, as Docker lists them."""
    mach = mach or machine()
    if mach not in ARCHITECTURES:
        raise SwatchError(f"no seccomp architecture known for this machine ({mach})")
    return list(ARCHITECTURES[mach])


def runtime_syscalls() -> dict[str, str]:
    """What runc needs between installing the filter and exec'ing the entrypoint: name → why
    (data/container_runtime.yaml)."""
    doc = yaml.safe_load((DATA_DIR / "container_runtime.yaml").read_text())
    return {**doc["runc"]["go_runtime"], **doc["runc"]["observed"]}


def profile_document(allowed: set[str], arg_rules: list[dict[str, Any]] | None = None,
                     mach: str | None = None) -> dict[str, Any]:
    """The profile: EPERM for everything but ``allowed`` (one rule, sorted), plus the
    argument-narrowed rules of syscalls not in ``allowed``."""
    rules: list[dict[str, Any]] = [{"action": "SCMP_ACT_ALLOW", "names": sorted(allowed)}]
    rules += sorted(arg_rules or [], key=lambda r: json.dumps(r, sort_keys=True))
    return {"architectures": architectures(mach), "defaultAction": "SCMP_ACT_ERRNO",
            "defaultErrnoRet": errno.EPERM, "syscalls": rules}


def dumps(doc: dict[str, Any]) -> str:
    """The stable layout: sorted keys, two-space indent, one name a line, a final newline."""
    return json.dumps(doc, indent=2, sort_keys=True) + "\n"


# ------------------------------------------------------------------------------ reading


@dataclass
class Rule:
    names: list[str]
    action: str
    errno_ret: int | None
    args: list[tuple[int, str, int, int]]  # index, op, value, valueTwo
    where: str  # syscalls[3]


@dataclass
class Profile:
    path: str
    default_action: str
    default_errno: int | None
    architectures: list[str]
    rules: list[Rule]
    flags: list[str] = field(default_factory=list)
    skipped: int = 0  # rules whose includes/excludes leave them out here

    @property
    def label(self) -> str:
        return os.path.basename(self.path)

    def errno_for(self, name: str) -> int:
        """The errno a denied ``name`` gets: its own ERRNO rule's (one without argument
        conditions), else the default's."""
        for r in self.rules:
            if name in r.names and r.action == "SCMP_ACT_ERRNO" and not r.args:
                return r.errno_ret if r.errno_ret is not None else (
                    self.default_errno or errno.EPERM)
        return self.default_errno if self.default_errno is not None else errno.EPERM


def _fail(path: str, where: str, why: str) -> SwatchError:
    return SwatchError(f"{path}: not an OCI seccomp profile: {where}: {why}")


def _kind(v: object) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean",
            int: "a number", float: "a number", type(None): "null"}.get(type(v), type(v).__name__)


def _cap_set() -> set[str]:
    """The effective capabilities CMD starts with (ours: it inherits them)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("CapEff:"):
                mask = int(line.split()[1], 16)
                return {c for i, c in enumerate(CAPABILITIES) if mask >> i & 1}
    except OSError:
        pass
    return set()


def _kernel_at_least(version: str) -> bool:
    def nums(v: str) -> tuple[int, ...]:
        out = []
        for part in v.split("-")[0].split(".")[:3]:
            digits = "".join(ch for ch in part if ch.isdigit())
            out.append(int(digits or 0))
        return tuple(out)
    return nums(platform.release()) >= nums(version)


def _applies(cond: dict[str, Any], caps: set[str], words: frozenset[str]) -> bool:
    """Docker's includes/excludes object: every condition given holds."""
    if cond.get("caps") and not set(cond["caps"]) <= caps:
        return False
    if cond.get("arches") and not set(cond["arches"]) & words:
        return False
    return not (cond.get("minKernel") and not _kernel_at_least(str(cond["minKernel"])))


def _known_name(seccomp: Any, name: str) -> bool:
    return seccomp.resolve_syscall(seccomp.Arch.NATIVE, name) != -1


def _close_matches(name: str) -> str:
    from syscall_watcher.kernel import syscalls

    near = difflib.get_close_matches(name, list(syscalls.table()), n=3, cutoff=0.6)
    return f" (did you mean {', '.join(near)}?)" if near else ""


def _int(path: str, where: str, v: object, lo: int, hi: int) -> int:
    if not isinstance(v, int) or isinstance(v, bool) or not lo <= v <= hi:
        raise _fail(path, where, f"{_kind(v)} {json.dumps(v)}, expected an integer from {lo} "
                    f"to {hi}")
    return v


def parse_profile(text: str, path: str, mach: str | None = None) -> Profile:
    """Check and read a profile; SwatchError (one line) on the first mistake."""
    seccomp = seccomp_binding()
    mach = mach or machine()
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as err:
        raise SwatchError(f"{path}:{err.lineno}:{err.colno}: not valid JSON: {err.msg}") from None
    if not isinstance(doc, dict):
        raise _fail(path, "the top level", f"{_kind(doc)}, expected an object")
    for key in doc:
        if key not in _TOP_KEYS:
            near = difflib.get_close_matches(key, sorted(_TOP_KEYS), n=1)
            hint = f" (did you mean {near[0]}?)" if near else ""
            raise _fail(path, f'"{key}"', f"unknown key{hint}; expected "
                        + ", ".join(sorted(_TOP_KEYS)))
    if "defaultAction" not in doc:
        raise _fail(path, '"defaultAction"', "missing")
    default = doc["defaultAction"]
    if default not in ACTIONS:
        raise _fail(path, '"defaultAction"', f"{json.dumps(default)} is not one of "
                    + ", ".join(ACTIONS))
    if default == "SCMP_ACT_NOTIFY":
        raise _fail(path, '"defaultAction"', "SCMP_ACT_NOTIFY needs a listener; swatch run "
                    "has none")
    default_errno = (_int(path, '"defaultErrnoRet"', doc["defaultErrnoRet"], 0, 4095)
                     if "defaultErrnoRet" in doc else None)
    arches: list[str] = []
    if "architectures" in doc:
        if not isinstance(doc["architectures"], list):
            raise _fail(path, '"architectures"', f"{_kind(doc['architectures'])}, expected a "
                        "list of SCMP_ARCH_ names")
        arches = list(doc["architectures"])
    for i, entry in enumerate(doc.get("archMap") or []):
        if not isinstance(entry, dict) or "architecture" not in entry:
            raise _fail(path, f"archMap[{i}]", "expected {\"architecture\": ..., "
                        "\"subArchitectures\": [...]}")
        arches += [entry["architecture"], *(entry.get("subArchitectures") or [])]
    for i, a in enumerate(arches):
        if not isinstance(a, str) or not a.startswith("SCMP_ARCH_") or not hasattr(
                seccomp.Arch, a.removeprefix("SCMP_ARCH_")):
            raise _fail(path, f"architectures[{i}]", f"{json.dumps(a)} is not a libseccomp "
                        "architecture (SCMP_ARCH_X86_64, SCMP_ARCH_AARCH64, ...)")
    native = ARCHITECTURES.get(mach, ("",))[0]
    if arches and native not in arches:
        raise SwatchError(f"{path}: architectures {', '.join(arches)} do not include this "
                          f"machine's {native or mach} ({mach})")
    flags = doc.get("flags") or []
    if not isinstance(flags, list) or any(f not in _FLAGS for f in flags):
        raise _fail(path, '"flags"', f"{json.dumps(flags)}: expected a list of "
                    + ", ".join(_FLAGS))
    rules_doc = doc.get("syscalls") or []
    if not isinstance(rules_doc, list):
        raise _fail(path, '"syscalls"', f"{_kind(rules_doc)}, expected a list of rules")
    caps, words = _cap_set(), _ARCH_WORDS.get(mach, frozenset({mach}))
    profile = Profile(path, default, default_errno, arches, [], flags)
    for i, r in enumerate(rules_doc):
        where = f"syscalls[{i}]"
        if not isinstance(r, dict):
            raise _fail(path, where, f"{_kind(r)}, expected an object")
        for key in r:
            if key not in _RULE_KEYS:
                raise _fail(path, f'{where}."{key}"', "unknown key; expected "
                            + ", ".join(sorted(_RULE_KEYS)))
        names = r.get("names", [r["name"]] if "name" in r else None)
        if not isinstance(names, list) or not names or not all(isinstance(n, str)
                                                                for n in names):
            raise _fail(path, f"{where}.names", "expected a list of syscall names")
        for j, n in enumerate(names):
            if not _known_name(seccomp, n):
                raise SwatchError(f"{path}: {where}.names[{j}]: unknown syscall "
                                  f"{json.dumps(n)}{_close_matches(n)}")
        action = r.get("action")
        if action not in ACTIONS:
            raise _fail(path, f"{where}.action", f"{json.dumps(action)} is not one of "
                        + ", ".join(ACTIONS))
        errno_ret = (_int(path, f"{where}.errnoRet", r["errnoRet"], 0, 4095)
                     if "errnoRet" in r else None)
        args = []
        for j, a in enumerate(r.get("args") or []):
            aw = f"{where}.args[{j}]"
            if not isinstance(a, dict) or set(a) - _ARG_KEYS or "index" not in a \
                    or "op" not in a:
                raise _fail(path, aw, "expected {\"index\", \"value\", \"valueTwo\", \"op\"}")
            if a["op"] not in OPS:
                raise _fail(path, f"{aw}.op", f"{json.dumps(a['op'])} is not one of "
                            + ", ".join(OPS))
            args.append((_int(path, f"{aw}.index", a["index"], 0, 5), a["op"],
                         _int(path, f"{aw}.value", a.get("value", 0), 0, 2**64 - 1),
                         _int(path, f"{aw}.valueTwo", a.get("valueTwo", 0), 0, 2**64 - 1)))
        for key in ("includes", "excludes"):
            if key in r and not isinstance(r[key], dict):
                raise _fail(path, f"{where}.{key}", f"{_kind(r[key])}, expected an object")
        if not _applies(r.get("includes") or {}, caps, words) or (
                r.get("excludes") and _applies(r["excludes"], caps, words)):
            profile.skipped += 1
            continue
        if action == "SCMP_ACT_NOTIFY":
            raise _fail(path, f"{where}.action", "SCMP_ACT_NOTIFY needs a listener; swatch "
                        "run has none")
        profile.rules.append(Rule(names, action, errno_ret, args, where))
    return profile


def read_profile(path: str | os.PathLike[str]) -> Profile:
    """A profile file (a regular file of at most 4 MiB), checked."""
    p = str(path)
    try:
        st = os.stat(p)
        if not os.path.isfile(p):
            raise SwatchError(f"{p}: not a regular file")
        if st.st_size > 4 << 20:
            raise SwatchError(f"{p}: {st.st_size} bytes, more than a profile's 4 MiB")
        text = Path(p).read_bytes().decode("utf-8")
    except OSError as err:
        raise SwatchError(f"cannot read {p}: {err.strerror}") from None
    except UnicodeDecodeError as err:
        raise SwatchError(f"{p}: not valid JSON: byte {err.start} is not UTF-8") from None
    return parse_profile(text, p)


def _action(seccomp: Any, name: str, errno_ret: int | None) -> int:
    return {
        "SCMP_ACT_ALLOW": lambda: seccomp.ALLOW,
        "SCMP_ACT_ERRNO": lambda: seccomp.ERRNO(errno.EPERM if errno_ret is None
                                                else errno_ret),
        "SCMP_ACT_KILL": lambda: seccomp.KILL,
        "SCMP_ACT_KILL_THREAD": lambda: seccomp.KILL_THREAD,
        "SCMP_ACT_KILL_PROCESS": lambda: seccomp.KILL_PROCESS,
        "SCMP_ACT_TRAP": lambda: seccomp.TRAP,
        "SCMP_ACT_TRACE": lambda: seccomp.TRACE(errno_ret or 0),
        "SCMP_ACT_LOG": lambda: seccomp.LOG,
    }[name]()


def build_filter(profile: Profile) -> Any:
    """The libseccomp filter of ``profile`` (not loaded): the kernel logs every action but
    ALLOW (SECCOMP_FILTER_FLAG_LOG), so swatch can show each denial."""
    seccomp = seccomp_binding()
    default = _action(seccomp, profile.default_action, profile.default_errno)
    f = seccomp.SyscallFilter(default)
    native = seccomp.system_arch()
    for a in dict.fromkeys(profile.architectures):
        arch = getattr(seccomp.Arch, a.removeprefix("SCMP_ARCH_"))
        if arch != native:
            try:
                f.add_arch(arch)
            except (OSError, RuntimeError, ValueError) as err:
                raise SwatchError(f"{profile.path}: architectures: cannot add {a}: {err}") \
                    from None
    for rule in profile.rules:
        errno_ret = rule.errno_ret if rule.errno_ret is not None else profile.default_errno
        if rule.action == profile.default_action and errno_ret == profile.default_errno:
            continue  # the same as the default: libseccomp refuses it, and it changes nothing
        action = _action(seccomp, rule.action, errno_ret)
        args = [seccomp.Arg(i, getattr(seccomp, op.removeprefix("SCMP_CMP_")), v, v2)
                for i, op, v, v2 in rule.args]
        for name in rule.names:
            try:
                f.add_rule(action, name, *args)
            except (OSError, RuntimeError, ValueError) as err:
                raise SwatchError(f"{profile.path}: {rule.where}: libseccomp refused the rule "
                                  f"for {name}: {err}") from None
    try:
        f.set_attr(seccomp.Attr.CTL_LOG, 1)
        if "SECCOMP_FILTER_FLAG_SPEC_ALLOW" in profile.flags:
            f.set_attr(seccomp.Attr.CTL_SSB, 1)
    except (AttributeError, OSError, RuntimeError, ValueError):
        pass  # an old libseccomp: the filter holds, the kernel does not log its denials
    return f
