#!/usr/bin/env bash
# Make a working Docker daemon and the local test image swatch-test-busybox:latest.
#
# Idempotent; run as root. Installs nothing (`make deps` installs docker.io and busybox-static).
# No init system and no image registry are assumed: if no dockerd answers on this root's socket,
# one is started in the background (log: $SWATCH_DOCKERD_LOG), and the image is a busybox-static
# rootfs fed to `docker import`. The dockerd started here creates no bridge and no iptables rules,
# so it cannot fight a dockerd that already owns this machine's network (e.g. the host's, when
# this runs in a chroot: tools/fresh-check); the test containers need no network.
#
# Exit status: 0 ready; 77 dockerd cannot run on this machine (callers may skip); other: error.
# Every non-zero exit prints one line on stderr saying why.
set -euo pipefail

IMAGE="${SWATCH_TEST_IMAGE:-swatch-test-busybox:latest}"
LOG="${SWATCH_DOCKERD_LOG:-/tmp/swatch-dockerd.log}"
START_TIMEOUT="${SWATCH_DOCKERD_TIMEOUT:-60}"
PIDFILE=/var/run/docker.pid
# Tried in order until one works; the first is enough on the development/CI machines.
ISOLATED="--iptables=false --ip6tables=false --bridge=none"
FLAG_SETS=(
    "${SWATCH_DOCKERD_FLAGS:-$ISOLATED}"
    "$ISOLATED --storage-driver=vfs"
)

say() { printf 'docker-env: %s\n' "$*" >&2; }
die() { say "$1"; exit "${2:-1}"; }
# Backstop: a command that fails where no check expected it names itself.
trap 'rc=$?; say "line $LINENO: \`$BASH_COMMAND\` exited $rc"; exit 1' ERR

[[ $(id -u) -eq 0 ]] || die "must run as root"

# --- what it needs (installed by make deps) ---------------------------------------------------
command -v dockerd >/dev/null || die "dockerd not found (Debian's docker.io): run 'sudo make deps'"
command -v docker >/dev/null || die "docker CLI not found (Debian's docker.io): run 'sudo make deps'"
BUSYBOX=/bin/busybox
[[ -x $BUSYBOX ]] && "$BUSYBOX" --list >/dev/null 2>&1 \
    || die "$BUSYBOX missing or not busybox (Debian's busybox-static): run 'sudo make deps'"

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

# This root's dockerd, by its pid file (not by name: in a chroot, the host's dockerd shows in
# the process list but serves another /var/run/docker.sock).
our_dockerd() {
    local pid
    [[ -r $PIDFILE ]] || return 1
    pid=$(<"$PIDFILE")
    [[ $pid =~ ^[0-9]+$ && $(cat "/proc/$pid/comm" 2>/dev/null) == dockerd ]] && printf '%s\n' "$pid"
}

if ! docker_up; then
    if pid=$(our_dockerd); then
        # Started by someone else and still coming up (or wedged): give it the same time.
        for ((i = 0; i < START_TIMEOUT; i++)); do
            if docker_up; then break; fi
            sleep 1
        done
        docker_up || die "a dockerd is running (pid $pid, $PIDFILE) but does not answer; see $LOG" 77
    else
        rm -f "$PIDFILE"
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
