# swatch — build, test, demo and the user-facing targets (thin wrappers over `swatch`).
ARCH := $(shell uname -m | sed -e 's/x86_64/x86/' -e 's/aarch64/arm64/')
TRIPLET := $(shell gcc -dumpmachine 2>/dev/null || echo x86_64-linux-gnu)
CLANG ?= clang
BPFTOOL ?= bpftool
PYTHON ?= /usr/bin/python3
VENV := .venv
SWATCH := $(VENV)/bin/swatch
BPF_CFLAGS := -g -O2 -target bpf -mcpu=v3 -D__TARGET_ARCH_$(ARCH) -Wall -Werror -Ivmlinux/$(ARCH) -Ibpf -Ibpf/include
BPF_SRCS := $(wildcard bpf/*.bpf.c)
BPF_OBJS := $(patsubst bpf/%.bpf.c,build/%.bpf.o,$(BPF_SRCS))
SYSCALL_HEADER := /usr/include/$(TRIPLET)/asm/unistd_64.h
SYSCALL_TABLE := syscall_watcher/data/syscall_table.json
# JSON twins of the data files (tools/data_json.py; the YAML stays the source): no PyYAML at start-up
DATA_JSON := syscall_watcher/data/syscalls.yaml.json syscall_watcher/data/profiles.yaml.json
# Everything the build, the tests, the demo and the VM runner need, installed by `make deps`
# (tools/install-deps: one apt-get, one pip, nothing when all is present). Nothing else installs.
APT_BUILD := clang llvm libbpf-dev bpftool libelf-dev zlib1g-dev linux-libc-dev gcc make \
	python3 python3-venv python3-dev pkg-config
# tests and demo: docker + a busybox image (tests/docker-env.sh), containerd and its ctr (a
# containerd node in test_kubernetes; docker.io depends on it too), curl and wget (--tls clients:
# OpenSSL, GnuTLS); the preventive-tier VMs (tools/vm-run.sh): QEMU and Debian 12's two
# kernels, 6.1 and 6.12 (bookworm-security); man-db renders the generated man page (a minimal
# Debian 12 has no `man`)
APT_TEST := iproute2 strace procps util-linux kmod file docker.io containerd busybox-static \
	qemu-system-x86 linux-image-amd64 linux-image-6.12-amd64 jq tmux git man-db curl wget
# for the next features: seccomp, io_uring, the Prometheus server, clean Debian roots
APT_NEXT := libseccomp-dev python3-seccomp liburing-dev prometheus debootstrap
APT_PACKAGES := $(APT_BUILD) $(APT_TEST) $(APT_NEXT)
# pip, into .venv: the VM runner; a ctypes libseccomp binding the venv can import; the audit
# log's Ed25519 signatures; `swatch serve`'s /metrics; detect's DNS answers (the last three also
# dependencies in pyproject.toml)
PIP_PACKAGES := virtme-ng==1.42 pyseccomp==0.1.2 cryptography==50.0.2 prometheus-client==0.26.0 \
	dnspython==2.9.2
# benchmark peers (make bench-deps, run by make bench)
APT_BENCH := strace linux-perf bpftrace libbpf-tools
PIP_BENCH := matplotlib
STAMP := build/.stamp

PID ?=
CONTAINER ?=
FILTER ?= default
# LATENCY=0: `swatch load --no-latency` (count without latency: sys_exit alone, no clock read)
LATENCY ?= 1
POLICY_FILE ?=
SW_TARGET = $(if $(PID),--pid $(PID),)$(if $(CONTAINER),--container $(CONTAINER),)

PREFIX ?= /usr/local
MANDIR ?= $(PREFIX)/share/man/man1
MANPAGE := build/swatch.1

.PHONY: all bpf deps bench-deps venv demo test image load watch unload status summary detect bench vmlinux clean \
	policy-load policy-summary policy-unload test-vm man install

all: bpf $(SYSCALL_TABLE) $(patsubst tests/workloads/%.c,build/workloads/%,$(wildcard tests/workloads/*.c))

bpf: $(BPF_OBJS)

build/%.bpf.o: bpf/%.bpf.c bpf/*.h bpf/include/*.h vmlinux/$(ARCH)/vmlinux.h | build
	$(CLANG) $(BPF_CFLAGS) -c $< -o $@

build:
	mkdir -p build

$(SYSCALL_TABLE): $(SYSCALL_HEADER) tools/gen_syscall_table.py
	$(PYTHON) tools/gen_syscall_table.py $(SYSCALL_HEADER) $@

build/workloads/%: tests/workloads/%.c | build
	mkdir -p build/workloads
	gcc -O2 -Wall -o $@ $<

# io_uring operations through liburing (liburing-dev, in APT_NEXT)
build/workloads/uring_ops: tests/workloads/uring_ops.c | build
	mkdir -p build/workloads
	gcc -O2 -Wall -o $@ $< -luring

# Regenerate the vendored vmlinux.h from the running kernel's BTF.
vmlinux:
	mkdir -p vmlinux/$(ARCH)
	$(BPFTOOL) btf dump file /sys/kernel/btf/vmlinux format c > vmlinux/$(ARCH)/vmlinux.h

# Install what is missing (needs root the first time) — run by demo and test, so a fresh Debian 12
# machine needs nothing else. Quick and silent when everything is there.
deps:
	@tools/install-deps --venv $(VENV) --python $(PYTHON) --apt "$(APT_PACKAGES)" --pip "$(PIP_PACKAGES)"

# The benchmark's peers (strace, perf, bpftrace, libbpf-tools) and its chart library.
bench-deps: deps
	@tools/install-deps --venv $(VENV) --python $(PYTHON) --apt "$(APT_BENCH)" --pip "$(PIP_BENCH)"

$(STAMP): pyproject.toml setup.py syscall_watcher/kernel/_build.py $(wildcard syscall_watcher/kernel/shim/*.[ch]) syscall_watcher/kernel/_shim.h bpf/watcher.h bpf/policy.h bpf/tls.h \
	bpf/include/common.h
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip setuptools wheel cffi
	$(VENV)/bin/pip install -q --no-build-isolation -e '.[test,docker]'
	mkdir -p build && touch $@

# The package's bytecode, as pip writes it for an installed swatch (the tree is installed
# editable here): without it every command compiles what it imports (~40 ms of start-up).
# compileall rewrites only what changed; a stale .pyc is never used (its source's mtime differs).
venv: $(STAMP) $(DATA_JSON)
	@$(VENV)/bin/python -m compileall -q syscall_watcher

syscall_watcher/data/%.yaml.json: syscall_watcher/data/%.yaml tools/data_json.py $(STAMP)
	$(VENV)/bin/python tools/data_json.py $< $@

demo: deps all venv
	$(VENV)/bin/python tools/demo.py

test: deps all venv
	$(VENV)/bin/python -m pytest -v --durations=40 tests

# The container image (deploy/Dockerfile, README "Kubernetes"): IMAGE_BASE=debootstrap builds
# the Debian 12 base here (no registry) and keeps it for the next build.
IMAGE_TAG ?= swatch:local
IMAGE_BASE ?= debian:bookworm-slim
image: all venv
	$(VENV)/bin/python tools/build_image.py --tag $(IMAGE_TAG) --base $(IMAGE_BASE)

# Only the tests that boot Debian 12's kernels 6.1 and 6.12 in QEMU (make test runs them too).
test-vm: deps all venv
	$(VENV)/bin/python -m pytest -v tests/test_policy_vm.py

load: all venv
	$(SWATCH) load $(SW_TARGET) $(if $(filter 0,$(LATENCY)),--no-latency,--filter $(FILTER))

watch: venv
	$(SWATCH) watch

unload: venv
	$(SWATCH) unload

status: venv
	$(SWATCH) status

summary: venv
	$(SWATCH) summary

# Is it an AI agent? The loaded tracer's target, or PID= / CONTAINER= (docs/detect.md).
DETECT_SAMPLES ?= 10
DETECT_INTERVAL ?= 3
detect: all venv
	$(SWATCH) detect $(SW_TARGET) --samples $(DETECT_SAMPLES) --interval $(DETECT_INTERVAL)

policy-load: all venv
	@test -n "$(POLICY_FILE)" || { echo "usage: make policy-load PID=1234|CONTAINER=name POLICY_FILE=policies/no-network.policy" >&2; exit 2; }
	$(SWATCH) policy load $(SW_TARGET) --policy $(POLICY_FILE)

policy-summary: venv
	$(SWATCH) policy summary

policy-unload: venv
	$(SWATCH) policy unload

# make bench BENCH_QUICK=1: the smoke run (small sizes, 2 interleaved runs, about a minute);
# BENCH_ARGS passes more options to bench/run.py (e.g. BENCH_ARGS="--only read,bystander").
bench: bench-deps all venv
	$(VENV)/bin/python bench/run.py $(if $(filter-out 0,$(BENCH_QUICK)),--quick) $(BENCH_ARGS)
	$(VENV)/bin/python bench/decoder.py $(if $(filter-out 0,$(BENCH_QUICK)),--events 200000 --runs 2)
	$(VENV)/bin/python bench/startup_bench.py $(if $(filter-out 0,$(BENCH_QUICK)),--runs 3)

# swatch(1), generated from the CLI itself (tools/gen_manpage.py): `man swatch` after install.
man: $(MANPAGE)

$(MANPAGE): venv $(wildcard syscall_watcher/cli/*.py) tools/gen_manpage.py | build
	$(VENV)/bin/python tools/gen_manpage.py $@

install: $(MANPAGE)
	install -D -m 644 $(MANPAGE) $(DESTDIR)$(MANDIR)/swatch.1
	-mandb -q 2>/dev/null || true

clean:
	rm -rf build syscall_watcher/kernel/_libbpf*.so syscall_watcher/kernel/_libbpf.c $(SYSCALL_TABLE) $(DATA_JSON)
