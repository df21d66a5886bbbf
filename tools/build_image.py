"""Build the swatch container image (deploy/Dockerfile) locally, with no registry if asked.

    .venv/bin/python tools/build_image.py --tag swatch:local [--base debootstrap|IMAGE]

The build context is made here: deploy/Dockerfile, deploy/runtime-packages.txt and wheels/ —
the swatch wheel built from a copy of this checkout's sources (as tests/test_package.py does)
and the wheels of its runtime dependencies at exactly the versions this Python has installed
(downloaded once by pip into build/image-wheels/, then reused offline).

--base debootstrap (the tests use it) makes the base image itself: `debootstrap
--variant=minbase bookworm` with the runtime packages included, `docker import`ed as
swatch-base:debian12-<hash>, where <hash> covers the package list, the suite, the variant and
the mirror. The base is kept (not removed by the tests) so the next build starts from it and
the Dockerfile's apt-get step is skipped; `docker rmi` it to rebuild. Debian packages already in
this machine's /var/cache/apt/archives are handed to debootstrap, which checks them against the
Release file's hashes and downloads only the rest.

Needs root (debootstrap, docker). Prints the image tag on stdout; progress on stderr.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "deploy" / "Dockerfile"
PACKAGE_LIST = ROOT / "deploy" / "runtime-packages.txt"
WHEEL_CACHE = ROOT / "build" / "image-wheels"
SUITE = "bookworm"
VARIANT = "minbase"
MIRROR = "http://deb.debian.org/debian"
BASE_REPO = "swatch-base"
HOST_DEBS = Path("/var/cache/apt/archives")
# Not needed in the image: dropped from the debootstrapped root before import.
BASE_PRUNE = ("var/cache/apt/archives", "var/lib/apt/lists", "usr/share/doc", "usr/share/man",
              "usr/share/info", "usr/share/locale")
# The checkout's own artefacts: the wheel is built from the sources alone (tests/test_package.py).
NOT_SOURCES = shutil.ignore_patterns(".git", ".venv", "build", "dist", "__pycache__", "*.so",
                                     "_libbpf.c", "syscall_table.json", ".pytest_cache",
                                     ".hypothesis", "*.egg-info", "bench", "tests", "docs")


class BuildError(Exception):
    """A step failed; the message says which and why (one line)."""


def say(text: str) -> None:
    print(f"build-image: {text}", file=sys.stderr, flush=True)


def run(argv: list[str], **kw) -> subprocess.CompletedProcess:  # type: ignore[no-untyped-def,type-arg]
    done = subprocess.run(argv, capture_output=True, text=True, check=False, **kw)
    if done.returncode != 0:
        tail = " ".join((done.stderr or done.stdout or "").strip().splitlines()[-3:])
        raise BuildError(f"{' '.join(argv[:4])} ... exited {done.returncode}: {tail}")
    return done


def runtime_packages() -> list[str]:
    """The Debian packages of deploy/runtime-packages.txt."""
    lines = PACKAGE_LIST.read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def base_tag(packages: list[str], mirror: str = MIRROR) -> str:
    """swatch-base:debian12-<hash of what goes into the base>."""
    key = "\n".join([SUITE, VARIANT, mirror, *sorted(packages)])
    return f"{BASE_REPO}:debian12-{hashlib.sha256(key.encode()).hexdigest()[:16]}"


def image_exists(tag: str) -> bool:
    return subprocess.run(["docker", "image", "inspect", tag], capture_output=True,
                          check=False).returncode == 0


def debootstrap_base(mirror: str = MIRROR) -> str:
    """The base image with the runtime packages, made by debootstrap unless already there."""
    packages = runtime_packages()
    tag = base_tag(packages, mirror)
    if image_exists(tag):
        say(f"base {tag} is cached")
        return tag
    if shutil.which("debootstrap") is None:
        raise BuildError("debootstrap not installed: run 'sudo make deps'")
    with tempfile.TemporaryDirectory(prefix="swatch-base-", dir="/var/tmp") as tmp:
        target = Path(tmp) / "root"
        archives = target / "var" / "cache" / "apt" / "archives"
        archives.mkdir(parents=True)
        seeded = 0
        for deb in HOST_DEBS.glob("*.deb") if HOST_DEBS.is_dir() else ():
            try:
                os.link(deb, archives / deb.name)
            except OSError:
                shutil.copy2(deb, archives / deb.name)
            seeded += 1
        say(f"debootstrap --variant={VARIANT} {SUITE} (+{','.join(packages)}; "
            f"{seeded} .debs offered from {HOST_DEBS})")
        run(["debootstrap", f"--variant={VARIANT}", f"--include={','.join(packages)}",
             SUITE, str(target), mirror])
        for rel in BASE_PRUNE:
            for entry in (target / rel).glob("*"):
                if entry.is_dir() and not entry.is_symlink():
                    shutil.rmtree(entry)
                else:
                    entry.unlink()
        say(f"docker import as {tag}")
        tar = subprocess.Popen(["tar", "-C", str(target), "--numeric-owner", "-c", "."],
                               stdout=subprocess.PIPE)
        try:
            run(["docker", "import", "--change", 'CMD ["/bin/bash"]',
                 "--change", f"LABEL org.swatch.base={tag}", "-", tag], stdin=tar.stdout)
        finally:
            assert tar.stdout is not None
            tar.stdout.close()
            if tar.wait() != 0:
                raise BuildError(f"tar of {target} exited {tar.returncode}")
    return tag


def _pins(name: str, extras: set[str], pins: dict[str, str]) -> None:
    """``name``'s version and, recursively, those of what it needs (with ``extras``)."""
    key = canonicalize_name(name)
    if key in pins:
        return
    pins[key] = metadata.version(name)
    for spec in metadata.requires(name) or []:
        req = Requirement(spec)
        if req.marker is None or any(req.marker.evaluate({"extra": e}) for e in extras | {""}):
            _pins(req.name, set(req.extras), pins)


def dependency_pins() -> list[str]:
    """``name==version`` for every distribution swatch[docker] needs, as installed here."""
    pins: dict[str, str] = {}
    _pins("swatch", {"docker"}, pins)
    pins.pop("swatch")
    return [f"{name}=={version}" for name, version in sorted(pins.items())]


def make_context(ctx: Path, python: str) -> None:
    """Dockerfile, runtime-packages.txt and wheels/ (swatch + its dependencies) in ``ctx``."""
    wheels = ctx / "wheels"
    wheels.mkdir(parents=True)
    shutil.copy2(DOCKERFILE, ctx / "Dockerfile")
    shutil.copy2(PACKAGE_LIST, ctx / "runtime-packages.txt")
    src = ctx.parent / "src"
    shutil.copytree(ROOT, src, ignore=NOT_SOURCES)
    say("building the swatch wheel")
    run([python, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w",
         str(wheels), str(src)], cwd="/")
    shutil.rmtree(src)
    pins = dependency_pins()
    WHEEL_CACHE.mkdir(parents=True, exist_ok=True)
    offline = [python, "-m", "pip", "download", "-q", "--no-deps", "--only-binary", ":all:",
               "--no-index", "--find-links", str(WHEEL_CACHE), "-d", str(wheels), *pins]
    if subprocess.run(offline, capture_output=True, check=False).returncode != 0:
        say(f"downloading {len(pins)} dependency wheels into {WHEEL_CACHE}")
        run([python, "-m", "pip", "download", "-q", "--no-deps", "--only-binary", ":all:",
             "-d", str(WHEEL_CACHE), *pins])
        run(offline)


def build(tag: str, base: str, python: str) -> str:
    """Build ``tag`` FROM ``base`` ("debootstrap": the cached local base); returns ``tag``."""
    if shutil.which("docker") is None:
        raise BuildError("docker not installed: run 'sudo make deps'")
    base_image = debootstrap_base() if base == "debootstrap" else base
    with tempfile.TemporaryDirectory(prefix="swatch-image-") as tmp:
        ctx = Path(tmp) / "context"
        make_context(ctx, python)
        say(f"docker build -t {tag} FROM {base_image}")
        # The classic builder: no BuildKit/buildx needed, and RUN steps that skip apt need no
        # network (the tests' dockerd has no bridge).
        run(["docker", "build", "-q", "--rm", "--force-rm", "--build-arg",
             f"BASE={base_image}", "-t", tag, str(ctx)], env={**os.environ, "DOCKER_BUILDKIT": "0"})
    return tag


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tag", default="swatch:local", help="the image's tag")
    parser.add_argument("--base", default="debian:bookworm-slim",
                        help="the FROM image, or 'debootstrap' to make one here (no registry)")
    parser.add_argument("--python", default=sys.executable,
                        help="the Python whose pip builds the wheel (with setuptools and cffi)")
    args = parser.parse_args(argv)
    try:
        print(build(args.tag, args.base, args.python))
    except (BuildError, OSError) as err:
        print(f"build-image: error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
