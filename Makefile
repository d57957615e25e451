# userbpf — top-level entry points.
#
#   make demo    set up, build, run the malloc-counter demo (the main job)
#   make test    set up, then fmt check, clippy, every test
#
# Both start with scripts/setup.sh, which installs what is missing (as root)
# and is quick when everything is already there.

CARGO ?= cargo
CARGO_HOME ?= $(HOME)/.cargo
export PATH := $(CARGO_HOME)/bin:$(PATH)

# Tools the tests use to build BPF objects (Debian 12 names them -16).
export CLANG ?= clang-16
export LLC ?= llc-16
export LLVM_STRIP ?= llvm-strip-16
export BPFTOOL ?= bpftool

# Keep CI logs readable and non-interactive.
export CARGO_TERM_PROGRESS_WHEN ?= never
export DEBIAN_FRONTEND := noninteractive

SHELL := /bin/bash
.SHELLFLAGS := -eo pipefail -c
# Targets run their steps in order even under `make -j`.
.NOTPARALLEL:

.PHONY: all help setup build test fmt clippy demo bench fuzz clean

all: build

help:
	@echo "make setup   install/check what the project needs (scripts/setup.sh)"
	@echo "make build   cargo build --release --workspace"
	@echo "make test    setup, fmt check, clippy -D warnings, all tests (release)"
	@echo "make demo    setup, build, run the malloc-counter demo (scripts/demo.sh)"
	@echo "make bench   run the benchmarks (userbpf-benches)"
	@echo "make fuzz    run the cargo-fuzz targets, 4 minutes each (fuzz/README.md)"
	@echo "make clean   cargo clean"

setup:
	bash scripts/setup.sh all

build:
	$(CARGO) build --release --workspace

fmt:
	$(CARGO) fmt --all

clippy:
	$(CARGO) clippy --workspace --all-targets -- -D warnings

test:
	bash scripts/setup.sh test
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	# The C-ABI tests load target/release/libbpf.so, which `cargo test`
	# alone does not produce (it builds libraries as rlibs for tests).
	$(CARGO) build --release --workspace
	$(CARGO) test --workspace --release
	# The conformance summary, printed (the workspace run captures it).
	$(CARGO) test --release -p userbpf-runtime --test conformance -- --nocapture

# The malloc counter (scripts/demo.sh; no root needed once set up): only
# the three crates it runs are built.
demo:
	bash scripts/setup.sh demo
	$(CARGO) build --release -p userbpf-cli -p userbpf-libbpf-so -p userbpf-agent
	bash scripts/demo.sh

bench:
	@if [ -d benches/benches ] || grep -q '^\[\[bench\]\]' benches/Cargo.toml; then \
		echo "+ $(CARGO) bench -p userbpf-benches"; \
		$(CARGO) bench -p userbpf-benches; \
	else \
		echo "no benchmarks yet"; \
	fi
	$(CARGO) build --release -p userbpf-benches -p userbpf-agent && target/release/userbpf-uprobe-bench
	$(CARGO) build --release -p userbpf-agent -p userbpf-libbpf-so -p userbpf-cli && bash benches/syscall/run.sh

# cargo-fuzz on the stable toolchain (RUSTC_BOOTSTRAP lets it pass -Z flags).
fuzz:
	command -v cargo-fuzz >/dev/null || $(CARGO) install cargo-fuzz
	cd fuzz && for t in btf_parse btf_ext_parse object_open; do \
	  RUSTC_BOOTSTRAP=1 $(CARGO) fuzz run -O $$t corpus/$$t -- -max_total_time=240 -jobs=1 -malloc_limit_mb=4500 || exit 1; done

clean:
	$(CARGO) clean
