#!/usr/bin/env bash
# The test command: installs what the tests need on a fresh machine (gdb, tmux, cpp), then runs
# the whole suite. KVM tests fail with a clear message when /dev/kvm is missing; set
# TTVM_SKIP_KVM=1 to skip them explicitly.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
command -v gdb >/dev/null 2>&1 || missing+=(gdb)
command -v tmux >/dev/null 2>&1 || missing+=(tmux)
# The C preprocessor builds constants.py for Linux's gdb scripts (tests/linux_gdb_scripts.rs).
command -v cpp >/dev/null 2>&1 || missing+=(cpp)
if [ ${#missing[@]} -gt 0 ]; then
    echo "scripts/test.sh: installing ${missing[*]}" >&2
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}"
fi

exec cargo test --release --workspace "$@"
