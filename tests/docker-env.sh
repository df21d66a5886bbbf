#!/usr/bin/env bash
# Make a working Docker daemon and the local test image swatch-test-busybox:latest.
#
# Idempotent; run as root. No init system and no image registry are assumed: dockerd is started
# in the background (log: $SWATCH_DOCKERD_LOG), and the image is a busybox-static rootfs fed to
# `docker import`.
#
# Exit status: 0 ready; 77 dockerd cannot run on this machine (callers may skip); other: error.
set -euo pipefail

IMAGE="${SWATCH_TEST_IMAGE:-swatch-test-busybox:latest}"
LOG="${SWATCH_DOCKERD_LOG:-/tmp/swatch-dockerd.log}"
START_TIMEOUT="${SWATCH_DOCKERD_TIMEOUT:-60}"
# Tried in order until one works; the defaults are enough on the development/CI machines.
FLAG_SETS=(
    "${SWATCH_DOCKERD_FLAGS:-}"
    "--iptables=false --ip6tables=false --bridge=none"
    "--iptables=false --ip6tables=false --bridge=none --storage-driver=vfs"
)

say() { printf 'docker-env: %s\n' "$*" >&2; }
die() { say "$1"; exit "${2:-1}"; }

[[ $(id -u) -eq 0 ]] || die "must run as root"

# --- packages -------------------------------------------------------------------------------
missing=()
command -v dockerd >/dev/null || missing+=(docker.io)
dpkg -s busybox-static >/dev/null 2>&1 || missing+=(busybox-static)
if ((${#missing[@]})); then
    say "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt_get() { apt-get -o DPkg::Lock::Timeout=600 -qq "$@"; }
    apt_get install -y "${missing[@]}" >/dev/null 2>&1 \
        || { apt_get update >/dev/null && apt_get install -y "${missing[@]}" >/dev/null; } \
        || die "apt-get install ${missing[*]} failed"
fi
BUSYBOX=/bin/busybox
[[ -x $BUSYBOX ]] || die "$BUSYBOX missing after installing busybox-static"

# --- daemon ---------------------------------------------------------------------------------
docker_up() { timeout 10 docker info >/dev/null 2>&1; }

start_dockerd() {  # $1: extra flags; returns 0 once `docker info` answers
    local flags=$1 pid i
    say "starting dockerd ${flags:-(default flags)}; log: $LOG"
    # shellcheck disable=SC2086 # the flags are words on purpose
    setsid dockerd $flags >>"$LOG" 2>&1 </dev/null &
    pid=$!
    for ((i = 0; i < START_TIMEOUT; i++)); do
        docker_up && return 0
        kill -0 "$pid" 2>/dev/null || { say "dockerd exited: $(tail -n 3 "$LOG" | tr '\n' ' ')"; return 1; }
        sleep 1
    done
    say "dockerd did not answer within ${START_TIMEOUT}s; stopping it"
    kill "$pid" 2>/dev/null || true
    for ((i = 0; i < 20; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
    return 1
}

if ! docker_up; then
    if pgrep -x dockerd >/dev/null; then
        # Started by someone else and still coming up (or wedged): give it the same time.
        for ((i = 0; i < START_TIMEOUT; i++)); do docker_up && break; sleep 1; done
        docker_up || die "a dockerd is running (pid $(pgrep -x dockerd | head -n1)) but does not answer; see $LOG" 77
    else
        rm -f /var/run/docker.pid
        started=false
        for flags in "${FLAG_SETS[@]}"; do
            if start_dockerd "$flags"; then started=true; break; fi
        done
        $started || die "dockerd cannot run on this machine with any flag set tried; see $LOG" 77
    fi
fi

# --- image ----------------------------------------------------------------------------------
build_image() {
    local rootfs applet
    rootfs=$(mktemp -d /tmp/swatch-rootfs.XXXXXX)
    # shellcheck disable=SC2064 # expand now: the variable is local
    trap "rm -rf '$rootfs'" RETURN
    mkdir -p "$rootfs"/{bin,dev,etc,proc,sys,tmp,root}
    chmod 1777 "$rootfs/tmp"
    cp "$BUSYBOX" "$rootfs/bin/busybox"
    for applet in $("$BUSYBOX" --list); do
        [[ -e $rootfs/bin/$applet ]] || ln -s busybox "$rootfs/bin/$applet"
    done
    printf 'root:x:0:0:root:/root:/bin/sh\n' >"$rootfs/etc/passwd"
    printf 'root:x:0:\n' >"$rootfs/etc/group"
    tar -C "$rootfs" --numeric-owner -c . \
        | docker import --change 'CMD ["/bin/sh"]' - "$IMAGE" >/dev/null
}

if ! docker image inspect "$IMAGE" >/dev/null 2>&1; then
    say "building $IMAGE from $BUSYBOX"
    build_image || die "docker import of $IMAGE failed"
fi

# --- smoke test -----------------------------------------------------------------------------
out=$(timeout 60 docker run --rm "$IMAGE" sh -c 'echo swatch-ok' 2>&1) \
    || die "docker run --rm $IMAGE failed: $(tr '\n' ' ' <<<"$out")" 77
[[ $out == swatch-ok ]] || die "docker run printed '$out', not swatch-ok" 77
say "ready: $(docker version --format 'server {{.Server.Version}}') image $IMAGE"
