# swatch — build, test, demo and the user-facing targets (thin wrappers over `swatch`).
ARCH := $(shell uname -m | sed -e 's/x86_64/x86/' -e 's/aarch64/arm64/')
TRIPLET := $(shell gcc -dumpmachine 2>/dev/null || echo x86_64-linux-gnu)
CLANG ?= clang
BPFTOOL ?= bpftool
PYTHON ?= /usr/bin/python3
VENV := .venv
SWATCH := $(VENV)/bin/swatch
BPF_CFLAGS := -g -O2 -target bpf -mcpu=v3 -D__TARGET_ARCH_$(ARCH) -Wall -Werror -Ivmlinux/$(ARCH) -Ibpf
BPF_SRCS := $(wildcard bpf/*.bpf.c)
BPF_OBJS := $(patsubst bpf/%.bpf.c,build/%.bpf.o,$(BPF_SRCS))
SYSCALL_HEADER := /usr/include/$(TRIPLET)/asm/unistd_64.h
SYSCALL_TABLE := syscall_watcher/data/syscall_table.json
APT_PACKAGES := clang llvm libbpf-dev bpftool libelf-dev zlib1g-dev linux-libc-dev gcc make \
	python3 python3-venv python3-dev pkg-config iproute2 strace procps util-linux
STAMP := build/.stamp

PID ?=
CONTAINER ?=
FILTER ?= default
POLICY_FILE ?=
SW_TARGET = $(if $(PID),--pid $(PID),)$(if $(CONTAINER),--container $(CONTAINER),)

.PHONY: all bpf deps venv demo test load watch unload status summary bench vmlinux clean \
	policy-load policy-summary policy-unload test-vm

all: bpf $(SYSCALL_TABLE) $(patsubst tests/workloads/%.c,build/workloads/%,$(wildcard tests/workloads/*.c))

bpf: $(BPF_OBJS)

build/%.bpf.o: bpf/%.bpf.c bpf/*.h vmlinux/$(ARCH)/vmlinux.h | build
	$(CLANG) $(BPF_CFLAGS) -c $< -o $@

build:
	mkdir -p build

$(SYSCALL_TABLE): $(SYSCALL_HEADER) tools/gen_syscall_table.py
	$(PYTHON) tools/gen_syscall_table.py $(SYSCALL_HEADER) $@

build/workloads/%: tests/workloads/%.c | build
	mkdir -p build/workloads
	gcc -O2 -Wall -o $@ $<

# Regenerate the vendored vmlinux.h from the running kernel's BTF.
vmlinux:
	mkdir -p vmlinux/$(ARCH)
	$(BPFTOOL) btf dump file /sys/kernel/btf/vmlinux format c > vmlinux/$(ARCH)/vmlinux.h

# Install missing Debian packages (needs root) — run by demo/test, so a fresh machine needs nothing else.
deps:
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then echo "installing:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; fi

$(STAMP): pyproject.toml setup.py syscall_watcher/_build.py syscall_watcher/_shim.c syscall_watcher/_shim.h bpf/watcher.h bpf/policy.h
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip setuptools wheel cffi
	$(VENV)/bin/pip install -q --no-build-isolation -e '.[test,docker]'
	mkdir -p build && touch $@

venv: $(STAMP)

demo: deps all venv
	$(VENV)/bin/python tools/demo.py

test: deps all venv
	$(VENV)/bin/python -m pytest -v tests

# Only the policy tests that boot Debian's stock kernel in QEMU (make test runs them too).
test-vm: deps all venv
	$(VENV)/bin/python -m pytest -v tests/test_policy_vm.py

load: all venv
	$(SWATCH) load $(SW_TARGET) --filter $(FILTER)

watch: venv
	$(SWATCH) watch

unload: venv
	$(SWATCH) unload

status: venv
	$(SWATCH) status

summary: venv
	$(SWATCH) summary

policy-load: all venv
	@test -n "$(POLICY_FILE)" || { echo "usage: make policy-load PID=1234|CONTAINER=name POLICY_FILE=policies/no-network.policy" >&2; exit 2; }
	$(SWATCH) policy-load $(SW_TARGET) --policy $(POLICY_FILE)

policy-summary: venv
	$(SWATCH) policy-summary

policy-unload: venv
	$(SWATCH) policy-unload

bench: all venv
	$(VENV)/bin/python bench/run.py $(BENCH_ARGS)
	$(VENV)/bin/python bench/decoder.py

clean:
	rm -rf build syscall_watcher/_libbpf*.so syscall_watcher/_libbpf.c $(SYSCALL_TABLE)
