"""One lifecycle for every pinned kernel component (the tracer, the enforcer, those to come):
where its pins live, pinning all or nothing, the one definition of loaded / absent / stale,
opening its pinned maps (checked against this build), and unloading only what is ours.

Layout of a pin directory (it must be on bpffs)::

    <pin_dir>/swatch-<kind>-v2/    empty directory, made first: "swatch's <kind>, layout 2"
    <pin_dir>/maps/<name>          the maps userspace opens; maps/meta is pinned LAST
    <pin_dir>/links/<name>         the attached links, pinned before maps/meta

``maps/meta`` is the completion marker: it carries the component's version and ``links``, a
bitmask of the links that load pinned (bit i = ``Component.links[i]``). A component is
*loaded* only when meta is pinned, its version is this build's, every map is pinned and
matches this build's object, and exactly the links meta names are pinned. Anything else in a
directory of our layout is *stale* (a load killed midway, an unload cut short, another
version's pins) and ``unload`` clears it. A directory that is not on bpffs, or holds anything
but our layout's names (each a BPF object of the right kind), is *foreign*: swatch reports it
and never deletes in it.

Pins of the first layout (``maps/`` and ``links/`` with our names, no marker directory) are
ours too: they are stale (never used) and ``unload`` removes them.
"""

from __future__ import annotations

import functools
import os
import re
import signal
import stat
import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Self

from syscall_watcher.kernel import libbpf
from syscall_watcher.errors import SwatchError
from syscall_watcher.kernel.libbpf import BPF_FS_MAGIC, BpfObject, Link, MapSet, MapSpec

LAYOUT = 2
BPFFS_ROOT = Path("/sys/fs/bpf")
_MARKER_RE = re.compile(r"swatch-([a-z]+)-v(\d+)")  # bpffs refuses names with a dot
# Test hook: the loader writes its pid to this file and waits for a signal just before it pins
# the completion marker, so a test can SIGKILL a real load at the one moment that matters.
HOLD_ENV = "SWATCH_TEST_HOLD_BEFORE_MARKER"


def pin_dir_from(value: str | Path | None, env: str, default: str) -> Path:
    """The pin directory from an option, else the environment, else the default. An empty
    value is an error, never the current directory."""
    if value is None:
        value = os.environ.get(env)
        if value is not None and value == "":
            raise SwatchError(f"{env} is set but empty: name a bpffs directory "
                              f"(default {default}) or unset it")
        if value is None:
            value = default
    elif str(value) == "":
        raise SwatchError("--pin-dir is empty: name a bpffs directory")
    return Path(value)


def ensure_bpffs(path: Path) -> None:
    """Mount bpffs at /sys/fs/bpf if it is not (some kernels do not mount it at boot)."""
    if not str(path).startswith(str(BPFFS_ROOT) + "/"):
        return
    with open("/proc/self/mounts") as f:
        if any(line.split()[1] == str(BPFFS_ROOT) and line.split()[2] == "bpf" for line in f):
            return
    if os.system(f"mount -t bpf bpf {BPFFS_ROOT} 2>/dev/null") != 0:
        raise SwatchError(f"bpffs is not mounted at {BPFFS_ROOT} and mounting it failed")


def on_bpffs(path: Path) -> bool:
    try:
        return libbpf.fs_magic(path) == BPF_FS_MAGIC
    except OSError:
        return False


@functools.lru_cache(maxsize=8)
def _object_specs(path: str) -> dict[str, MapSpec]:
    obj = BpfObject(path)
    try:
        return obj.map_specs()
    finally:
        obj.close()


@dataclass(frozen=True)
class PinState:
    """What a pin directory holds: state is 'absent', 'loaded', 'stale' or 'foreign'."""

    state: str
    detail: str = ""

    @property
    def loaded(self) -> bool:
        return self.state == "loaded"


@dataclass(frozen=True)
class Component:
    """A kind of pinned kernel component: its names, its object, its commands."""

    kind: str                      # names the marker directory: "tracer", "policy"
    noun: str                      # in messages: "pins" / "policy pins"
    maps: tuple[str, ...]          # under maps/; "meta" is the completion marker
    links: tuple[str, ...]         # under links/; bit i of meta.links is links[i]: APPEND ONLY
    version: int                   # meta.version this build writes
    meta_type: str                 # cffi type of meta's value, with .version and .links
    object_path: Callable[[], Path]
    unload_cmd: str                # "swatch unload"
    load_hint: str                 # how to load one, for "nothing is loaded"
    sized_at_load: tuple[str, ...] = ()  # arrays whose max_entries the loader sets (options)

    @property
    def marker(self) -> str:
        return f"swatch-{self.kind}-v{LAYOUT}"

    def expected_specs(self) -> dict[str, MapSpec]:
        """Each map as this build's object declares it (max_entries 0: sized at load)."""
        specs = _object_specs(str(self.object_path()))
        for name in self.sized_at_load:
            specs[name] = dataclasses.replace(specs[name], max_entries=0)
        return specs

    # ------------------------------------------------------------------ status

    def status(self, pin_dir: Path) -> PinState:
        """The one definition of absent / loaded / stale / foreign (see the module doc)."""
        if os.geteuid() != 0:  # bpf_obj_get would fail, and every pin look foreign
            raise SwatchError("must run as root: reading BPF pins needs CAP_BPF")
        try:
            st = os.lstat(pin_dir)
        except FileNotFoundError:
            return PinState("absent")
        except OSError as err:
            return PinState("foreign", f"cannot examine it: {err.strerror}")
        if stat.S_ISLNK(st.st_mode):
            return PinState("foreign", "it is a symbolic link")
        if not stat.S_ISDIR(st.st_mode):
            return PinState("foreign", "it is not a directory")
        if not on_bpffs(pin_dir):
            return PinState("foreign", "it is not on bpffs")
        entries = set(os.listdir(pin_dir))
        if not entries:
            return PinState("absent")
        unknown = sorted(entries - {"maps", "links", self.marker})
        if unknown:
            return PinState("foreign", self._unknown(unknown))
        found: dict[str, set[str]] = {"maps": set(), "links": set()}
        for sub, names, kind in (("maps", self.maps, "map"), ("links", self.links, "link")):
            if sub not in entries:
                continue
            d = pin_dir / sub
            if d.is_symlink() or not d.is_dir():
                return PinState("foreign", f"{sub} is not a directory")
            for name in sorted(os.listdir(d)):
                if name not in names:
                    return PinState("foreign", f"{sub}/{name} is not one of swatch's names")
                if libbpf.pinned_kind(d / name) != kind:
                    return PinState("foreign", f"{sub}/{name} is not a pinned BPF {kind}")
                found[sub].add(name)
        if self.marker in entries:
            m = pin_dir / self.marker
            if m.is_symlink() or not m.is_dir() or any(m.iterdir()):
                return PinState("foreign", f"{self.marker} is not swatch's empty marker directory")
        else:
            return PinState("stale", "pins of an earlier swatch layout")
        return self._completion(pin_dir, found["maps"], found["links"])

    def _unknown(self, names: list[str]) -> str:
        for name in names:
            m = _MARKER_RE.fullmatch(name)
            if m and m.group(1) != self.kind:
                return f"it holds swatch's {m.group(1)} pins, not the {self.kind}'s"
            if m:
                return f"it holds swatch {self.kind} pins of layout {m.group(2)} (another version)"
        return "unknown entries: " + ", ".join(names[:3]) + (" ..." if len(names) > 3 else "")

    def _completion(self, pin_dir: Path, maps: set[str], links: set[str]) -> PinState:
        if "meta" not in maps:
            return PinState("stale", "no completion marker maps/meta: the load did not finish")
        specs = self.expected_specs()
        for name in sorted(maps):
            m = libbpf.open_pinned_map(pin_dir / "maps" / name)
            try:
                diff = m.spec().mismatch(specs[name])
                if diff:
                    return PinState("stale", f"maps/{name}: {diff}")
                if name == "meta":
                    meta = libbpf.new(f"{self.meta_type} *")
                    if not m.lookup(libbpf.new("uint32_t *", 0), meta):
                        return PinState("stale", "maps/meta is empty")
                    version, mask = int(meta.version), int(meta.links)
            finally:
                m.close()
        if version != self.version:
            return PinState("stale", f"maps/meta: version {version}, this swatch is version "
                            f"{self.version}")
        if mask >> len(self.links):
            return PinState("stale", f"maps/meta names links this swatch does not know "
                            f"(mask {mask:#x})")
        expected = {name for i, name in enumerate(self.links) if mask & (1 << i)}
        missing = [f"maps/{n}" for n in self.maps if n not in maps]
        missing += [f"links/{n}" for n in self.links if n in expected and n not in links]
        if missing:
            return PinState("stale", "missing " + ", ".join(missing))
        extra = sorted(links - expected)
        if extra:
            return PinState("stale", "links meta does not name: " + ", ".join(extra))
        return PinState("loaded")

    def stale_message(self, pin_dir: Path, state: PinState) -> str:
        return (f"stale {self.noun} in {pin_dir} ({state.detail}): a load did not finish, an "
                f"unload was cut short, or another swatch version pinned them; run "
                f"`{self.unload_cmd} --pin-dir {pin_dir}` to clear them")

    def foreign_message(self, pin_dir: Path, state: PinState) -> str:
        return f"{pin_dir} is not a swatch {self.kind} pin directory ({state.detail})"

    def problem(self, pin_dir: Path, state: PinState) -> str | None:
        """Why pin_dir cannot be used although something is there (None if loaded/absent)."""
        if state.state == "stale":
            return self.stale_message(pin_dir, state)
        if state.state == "foreign":
            return self.foreign_message(pin_dir, state)
        return None

    def require_free(self, pin_dir: Path, already: str, replace: bool = False) -> PinState:
        """Before a load: the state there, or an error unless nothing (or, with ``replace``,
        something of ours) is pinned. ``already`` is the "already loaded" message."""
        state = self.status(pin_dir)
        if state.state == "foreign":
            raise SwatchError(self.foreign_message(pin_dir, state) + "; nothing was loaded")
        if state.state == "absent":
            _missing_on_bpffs(pin_dir)
        if state.state == "loaded" and not replace:
            raise SwatchError(already)
        if state.state == "stale" and not replace:
            raise SwatchError(self.stale_message(pin_dir, state))
        return state

    def require_loaded(self, pin_dir: Path) -> None:
        state = self.status(pin_dir)
        if state.state == "absent":
            raise SwatchError(f"nothing is loaded (no {self.noun} in {pin_dir}); start with "
                              f"`{self.load_hint}`")
        problem = self.problem(pin_dir, state)
        if problem:
            raise SwatchError(problem)

    # ------------------------------------------------------------------ open

    def open_maps(self, pin_dir: Path, cls: type[MapSet]) -> MapSet:
        """The maps of a loaded component, each checked against this build's object."""
        self.require_loaded(pin_dir)
        try:
            return cls.open_pinned(pin_dir / "maps", self.expected_specs())
        except libbpf.MapMismatch as err:
            raise SwatchError(f"{err}; run `{self.unload_cmd} --pin-dir {pin_dir}` to clear "
                              "them") from None

    # ------------------------------------------------------------------ pin

    def pin(self, pin_dir: Path, obj: BpfObject, links: dict[str, Link]) -> None:
        """Pin the marker directory, the maps, the links, then meta (with the link mask) last;
        all or nothing. ``links`` is keyed by pin name (one of ``self.links``)."""
        state = self.status(pin_dir)
        if state.state != "absent":
            raise SwatchError(f"{pin_dir} is not free ({state.state}): nothing was loaded")
        todo = _missing_on_bpffs(pin_dir)
        made: list[Path] = []
        pinned: list[Path] = []
        try:
            for d in reversed(todo):
                d.mkdir()
                made.append(d)
            for sub in (self.marker, "maps", "links"):
                (pin_dir / sub).mkdir()
                made.append(pin_dir / sub)
            for name in self.maps:
                if name != "meta":
                    obj.pin_map(name, pin_dir / "maps" / name)
                    pinned.append(pin_dir / "maps" / name)
            mask = 0
            for name, link in links.items():
                link.pin(pin_dir / "links" / name)
                pinned.append(pin_dir / "links" / name)
                mask |= 1 << self.links.index(name)
            meta_map = obj.map("meta")
            key = libbpf.new("uint32_t *", 0)
            meta = libbpf.new(f"{self.meta_type} *")
            meta_map.lookup(key, meta)
            meta.version = self.version
            meta.links = mask
            meta_map.update(key, meta)
            _test_hold()
            obj.pin_map("meta", pin_dir / "maps" / "meta")
        except BaseException as err:
            for p in reversed(pinned):
                try:
                    p.unlink()
                except OSError:
                    pass
            for d in reversed(made):
                try:
                    d.rmdir()
                except OSError:
                    pass
            if isinstance(err, OSError):
                raise SwatchError(f"pin in {pin_dir}: {err.strerror} ({err.filename}); "
                                  "nothing was loaded") from None
            raise

    # ------------------------------------------------------------------ unload

    def unload(self, pin_dir: Path) -> list[str] | None:
        """Remove this component's pins (detaching its links): meta first, so a cut-short
        unload leaves a stale directory, never a "loaded" one. Only our names are removed,
        one by one; a foreign directory is refused untouched. Returns None if nothing was
        there, else what could not be removed (empty: everything)."""
        state = self.status(pin_dir)
        if state.state == "absent":
            return None
        if state.state == "foreign":
            raise SwatchError(self.foreign_message(pin_dir, state) + "; nothing was removed")
        files = [pin_dir / "maps" / "meta"]
        files += [pin_dir / "links" / n for n in self.links]
        files += [pin_dir / "maps" / n for n in self.maps if n != "meta"]
        for p in files:
            try:
                p.unlink()
            except FileNotFoundError:
                pass
        left = []
        for d in (pin_dir / "links", pin_dir / "maps", pin_dir / self.marker, pin_dir):
            try:
                d.rmdir()
            except FileNotFoundError:
                pass
            except OSError as err:
                left.append(f"{d} ({err.strerror})")
        return left


class LoadedComponent(MapSet):
    """A component this process loaded: its object, its maps, and (until pinned) its links.
    Subclasses set COMPONENT, and list their MapSet (MAP_TYPES) after this class."""

    COMPONENT: ClassVar[Component]

    def __init__(self, obj: BpfObject, links: dict[str, Link]) -> None:
        super().__init__({name: obj.map(name) for name in self.COMPONENT.maps})
        self.obj = obj
        self.links = links

    def links_by_pin_name(self) -> dict[str, Link]:
        return self.links

    def pin(self, pin_dir: Path) -> None:
        """Pin so the component outlives this process: all or nothing, completion marker last."""
        self.COMPONENT.pin(pin_dir, self.obj, self.links_by_pin_name())

    def close(self) -> None:
        """Detach what is not pinned and free the object (pinned links stay attached)."""
        super().close()
        for link in self.links.values():
            link.destroy()
        self.links.clear()
        self.obj.close()


class PinnedComponent(MapSet):
    """The maps of a component loaded and pinned earlier; subclasses set COMPONENT."""

    COMPONENT: ClassVar[Component]

    @classmethod
    def open(cls, pin_dir: Path) -> Self:
        """Only if loaded (else one line saying why), each map checked against this build."""
        maps = cls.COMPONENT.open_maps(pin_dir, cls)
        assert isinstance(maps, cls)
        return maps


def _missing_on_bpffs(pin_dir: Path) -> list[Path]:
    """The directories pin_dir still needs, deepest first, after checking that the part that
    exists is on bpffs (mounting it at /sys/fs/bpf if needed)."""
    ensure_bpffs(pin_dir)
    ancestor = pin_dir
    todo: list[Path] = []
    while not ancestor.exists():
        todo.append(ancestor)
        ancestor = ancestor.parent
    if not ancestor.is_dir() or not on_bpffs(ancestor):
        raise SwatchError(f"{pin_dir} is not on bpffs ({ancestor} is not): pins live on a "
                          "bpf filesystem, e.g. under /sys/fs/bpf; nothing was loaded")
    return todo


def _test_hold() -> None:
    """The test hook (HOLD_ENV): announce our pid, then wait to be killed."""
    path = os.environ.get(HOLD_ENV)
    if not path:
        return
    with open(path, "w") as f:
        f.write(f"{os.getpid()}\n")
    while True:
        signal.pause()
