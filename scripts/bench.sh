#!/usr/bin/env bash
# One command for the benchmark: builds ttvm and the ttvm-bench harness (release) and runs
# the harness (what `ttvm bench` also runs), which prints
# the table, writes bench-results/<date>.json and bench-results/latest.json and regenerates
# docs/PERFORMANCE.md. Arguments are passed to `ttvm bench` (e.g. --quick, --runs 5,
# --no-qemu; `ttvm bench --help` lists them).
#
# QEMU (the comparison) is Debian's qemu-system-x86 7.2. When it is not found ($TTVM_QEMU,
# target/qemu), this script unpacks it privately into target/qemu with apt-get download and
# dpkg -x (a system-wide install conflicts with newer qemu-utils on some machines), and
# installs the shared libraries it lacks. If that fails, the QEMU columns are skipped with
# a message. gdb is installed with apt-get when missing. Tests never need QEMU.
set -euo pipefail
cd "$(dirname "$0")/.."

QEMU_ROOT="$PWD/target/qemu/root"
QEMU_DEBS=(qemu-system-x86 qemu-system-common qemu-system-data seabios ipxe-qemu)

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"

note() { echo "scripts/bench.sh: $*" >&2; }

install_qemu() {
    local debs="$PWD/target/qemu/debs"
    mkdir -p "$debs" "$QEMU_ROOT"
    note "unpacking QEMU into target/qemu (apt-get download + dpkg -x)"
    $SUDO apt-get update -qq || return 1
    (cd "$debs" && apt-get download "${QEMU_DEBS[@]}") || return 1
    for d in "$debs"/*.deb; do dpkg -x "$d" "$QEMU_ROOT" || return 1; done
    local bin="$QEMU_ROOT/usr/bin/qemu-system-x86_64"
    [ -x "$bin" ] || return 1
    # Shared libraries the binary lacks (the set Debian 12 machines need; see
    # sample-kernels/README.md). Check with: ldd "$bin" | grep 'not found'.
    if ldd "$bin" | grep -q 'not found'; then
        DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq \
            libcapstone4 libfdt1 libpmem1 librdmacm1 libibverbs1 libslirp0 libvdeplug2 || true
    fi
    "$bin" --version >/dev/null 2>&1
}

if ! command -v gdb >/dev/null 2>&1; then
    note "installing gdb"
    $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq gdb || note "gdb not installed: gdb measurements will be skipped"
fi

if [ -z "${TTVM_QEMU:-}" ] && [[ " $* " != *" --no-qemu "* ]]; then
    if [ ! -x "$QEMU_ROOT/usr/bin/qemu-system-x86_64" ] || ! "$QEMU_ROOT/usr/bin/qemu-system-x86_64" --version >/dev/null 2>&1; then
        install_qemu || note "could not install QEMU into target/qemu: the QEMU measurements will be skipped"
    fi
    if [ -x "$QEMU_ROOT/usr/bin/qemu-system-x86_64" ]; then
        export TTVM_QEMU="$QEMU_ROOT/usr/bin/qemu-system-x86_64"
        export TTVM_QEMU_FIRMWARE="$QEMU_ROOT/usr/share/qemu:$QEMU_ROOT/usr/share/seabios"
    fi
fi

cargo build --release -p ttvm -p ttvm-bench
TARGET_DIR="${CARGO_TARGET_DIR:-target}"
export TTVM_BENCH_INVOKED_AS="scripts/bench.sh${*:+ $*}"
exec "$TARGET_DIR/release/ttvm-bench" "$@"
