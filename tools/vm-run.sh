#!/usr/bin/env bash
# Run one command inside a throwaway QEMU VM booted with a stock Debian kernel, for the hooks the
# host kernel refuses (lsm/*, fmod_ret, fentry). The host's userspace is shared read-only; the
# current directory is shared read-write, and the command runs there as root.
#
#   tools/vm-run.sh MODE CMD [ARG ...]
#
#   MODE   bpf-lsm      boot with bpf in the active LSM list (lsm/* programs can attach)
#          no-bpf-lsm   boot without it: lsm/* programs still load AND attach there, but never
#                       run (measured: no denial), so only the fmod_ret tier enforces
#
# Prints the command's output and exits with its exit code. If the VM cannot boot, or dies before
# the command finishes, or something it needs is missing, prints why on stderr and exits 125.
# It installs nothing: `make deps` installs QEMU, both kernels and virtme-ng beforehand.
#
# Environment:
#   VM_KERNEL        kernel series to boot: 6.1 (Debian 12's linux-image-amd64, the default) or
#                    6.12 (linux-image-6.12-amd64), or a path to a vmlinuz file
#   VM_TIMEOUT       seconds before the whole VM is killed (default 900)
#   VM_BOOT_TIMEOUT  seconds the guest may take to start the command (default 300)
#   VM_MEMORY        guest memory (default 2G);  VM_CPUS  guest CPUs (default 2)
#   VM_MOUNT_BPFFS   1 = mount bpffs at /sys/fs/bpf before the command (default 0: like the
#                    host, where bpffs is not mounted at boot and swatch must mount it itself)
#   VM_VERBOSE       1 = show virtme-ng's and QEMU's own messages
#
# Software emulation only (/dev/kvm is present on these machines but hangs): boot + a short
# command took 22-80 s (depending on host load), so boot one VM per test run, not per test.
set -euo pipefail

readonly VM_FAIL=125
REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
readonly REPO_ROOT
VENV=${VENV:-$REPO_ROOT/.venv}

die() {
	printf 'vm-run: %s\n' "$*" >&2
	exit "$VM_FAIL"
}
# Backstop: any command that fails where no check above it expected it names itself.
trap 'rc=$?; printf "vm-run: line %s: \`%s\` exited %s\n" "$LINENO" "$BASH_COMMAND" "$rc" >&2; exit "$VM_FAIL"' ERR

usage() {
	sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}" >&2
	exit 2
}

[[ $# -ge 2 ]] || usage
mode=$1
shift
case $mode in
bpf-lsm) lsm_list=lockdown,capability,landlock,bpf ;;
no-bpf-lsm) lsm_list=lockdown,capability,landlock ;;
*) die "unknown mode '$mode'; expected bpf-lsm or no-bpf-lsm" ;;
esac

[[ $(id -u) -eq 0 ]] || die "must run as root (reads /boot/vmlinuz-*, runs QEMU)"

# --------------------------------------------------------------------------- what it needs

newest() { # newest existing file matching the glob(s), by version sort; empty if none
	local f
	for f in "$@"; do
		if [[ -e $f ]]; then printf '%s\n' "$f"; fi
	done | sort -V | tail -n 1
}

case ${VM_KERNEL:-6.1} in
/*)
	kernel=$VM_KERNEL
	[[ -r $kernel ]] || die "VM_KERNEL=$kernel: no such file"
	;;
6.1)
	kernel=$(newest /boot/vmlinuz-6.1.0-*-amd64)
	[[ -n $kernel ]] || die "no /boot/vmlinuz-6.1.0-*-amd64 (Debian's linux-image-amd64): run 'sudo make deps'"
	;;
6.12)
	kernel=$(newest /boot/vmlinuz-6.12.*-amd64)
	[[ -n $kernel ]] || die "no /boot/vmlinuz-6.12.*-amd64 (Debian's linux-image-6.12-amd64): run 'sudo make deps'"
	;;
*) die "VM_KERNEL=${VM_KERNEL}: expected 6.1, 6.12 or a path to a vmlinuz file" ;;
esac
command -v qemu-system-x86_64 >/dev/null || die "qemu-system-x86_64 not found (Debian's qemu-system-x86): run 'sudo make deps'"
command -v file >/dev/null || die "file not found (virtme-ng reads the kernel's version with it): run 'sudo make deps'"
command -v busybox >/dev/null || die "busybox not found (virtme-ng builds the guest's initramfs with it): run 'sudo make deps'"

# A bzImage carries "HdrS" at offset 0x202; QEMU spins forever on anything else.
[[ $(od -An -c -j 514 -N 4 "$kernel" 2>/dev/null | tr -d ' ') == HdrS ]] ||
	die "'$kernel' is not a bootable x86 kernel image (no bzImage header)"

[[ -x $VENV/bin/python ]] || die "no virtualenv at $VENV (set VENV=...): run 'sudo make deps'"
[[ -x $VENV/bin/vng ]] || die "no virtme-ng in $VENV ($VENV/bin/vng): run 'sudo make deps'"
# vng starts its helpers (virtme-run, virtme-init) through PATH.
export PATH="$VENV/bin:$PATH"

# --------------------------------------------------------------------------- run

# A host directory shared read-write with the guest: the guest writes 'booted' when its shell
# starts and 'rc' when the command ends, so "the VM never came up" and "the command failed" can
# be told apart without trusting whatever exit code virtme-ng and QEMU pass back.
state=$(mktemp -d /tmp/vm-run.XXXXXX)
vng_log=$state/vng.log
trap 'rm -rf "$state"' EXIT

workdir=$PWD
quoted_cmd=$(printf '%q ' "$@")
cat >"$state/guest.sh" <<EOF
#!/bin/bash
echo "\$(cut -d' ' -f1 /proc/uptime)" > '$state/booted'
if [[ '${VM_MOUNT_BPFFS:-0}' == 1 ]] && ! mountpoint -q /sys/fs/bpf; then
	mount -t bpf bpf /sys/fs/bpf || echo "vm-run: cannot mount bpffs in the guest" >&2
fi
cd '$workdir' || exit $VM_FAIL
$quoted_cmd
rc=\$?
echo "\$rc" > '$state/rc'
exit "\$rc"
EOF
chmod +x "$state/guest.sh"

vng_args=(
	--run "$kernel" --disable-kvm --force-9p
	--memory "${VM_MEMORY:-2G}" --cpus "${VM_CPUS:-2}"
	--append "lsm=$lsm_list"
	--rwdir "$workdir" --rwdir "$state"
	--exec "$state/guest.sh"
)
[[ ${VM_VERBOSE:-0} == 1 ]] && vng_args=(--verbose "${vng_args[@]}")

total_timeout=${VM_TIMEOUT:-900}
boot_timeout=${VM_BOOT_TIMEOUT:-300}
start=$SECONDS
# timeout(1) runs vng in a process group of its own and, when it is signalled, passes the
# signal to that whole group, so killing $vm_pid takes QEMU down with it.
# The guest command's stderr arrives on vng's stderr: pass it through, and keep a copy to
# explain a failed boot with.
timeout --kill-after=10 "$total_timeout" vng "${vng_args[@]}" 2> >(tee "$vng_log" >&2) &
vm_pid=$!
trap 'kill -TERM "$vm_pid" 2>/dev/null || true; wait "$vm_pid" 2>/dev/null || true; rm -rf "$state"' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
boot_timed_out=0
while kill -0 "$vm_pid" 2>/dev/null; do
	if [[ ! -e $state/booted ]] && ((SECONDS - start >= boot_timeout)); then
		boot_timed_out=1
		kill -TERM "$vm_pid" 2>/dev/null || true
		break
	fi
	sleep 1
done
vng_rc=0
wait "$vm_pid" || vng_rc=$?
sleep 0.2 # let tee write the last of the log
elapsed=$((SECONDS - start))

explain() {
	{
		printf 'vm-run: %s\n' "$1"
		printf 'vm-run: kernel %s, lsm=%s, virtme-ng exit code %s, %ss\n' \
			"$kernel" "$lsm_list" "$vng_rc" "$elapsed"
		if [[ ${VM_VERBOSE:-0} == 1 ]]; then
			echo "vm-run: last lines from virtme-ng, QEMU and the guest console:"
			tail -n 25 "$vng_log" | sed 's/^/  | /'
		else
			echo "vm-run: run again with VM_VERBOSE=1 to see the guest's kernel console"
		fi
	} >&2
	exit "$VM_FAIL"
}

((boot_timed_out)) && explain "the VM did not boot within ${boot_timeout}s (VM_BOOT_TIMEOUT)"
if [[ $vng_rc -eq 124 || $vng_rc -eq 137 ]]; then
	[[ -e $state/booted ]] && explain "timed out after ${total_timeout}s while the command was running (VM_TIMEOUT)"
	explain "timed out after ${total_timeout}s before the VM booted (VM_TIMEOUT)"
fi
[[ -e $state/booted ]] || explain "the VM did not boot (the guest never started the command)"
[[ -e $state/rc ]] || explain "the VM died while the command was running (kernel panic or QEMU crash?)"

rc=$(<"$state/rc")
[[ $rc =~ ^[0-9]+$ ]] || explain "the guest wrote an unreadable exit code: '$rc'"
if [[ $vng_rc -ne $rc ]]; then
	printf 'vm-run: note: virtme-ng exited %s, the guest command %s; using the latter\n' "$vng_rc" "$rc" >&2
fi
printf 'vm-run: %s, lsm=%s: exit %s after %ss (guest booted in %ss)\n' \
	"$(basename "$kernel")" "$lsm_list" "$rc" "$elapsed" "$(<"$state/booted")" >&2
exit "$rc"
