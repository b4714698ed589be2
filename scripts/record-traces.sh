#!/usr/bin/env bash
# Re-records the bug traces committed under tests/traces/VENDOR/ (amd or intel: a trace
# replays only on a host of the CPU vendor it was recorded on) and writes their provenance
# to tests/traces/VENDOR/README.md. Run it on a host of each vendor after a trace-format
# change (FORMAT_VERSION bump) and commit the result together with the new pinned stops in
# tests/ci_traces.rs.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet
TTVM=target/release/ttvm
case "$(grep -m1 '^vendor_id' /proc/cpuinfo | cut -d: -f2 | xargs)" in
    AuthenticAMD) VENDOR=amd ;;
    GenuineIntel) VENDOR=intel ;;
    *) echo "record-traces.sh: unknown CPU vendor" >&2; exit 2 ;;
esac
OUT=tests/traces/$VENDOR
mkdir -p "$OUT"

# The flaky kernel, recorded until it fails (realtime clock: interrupt timing varies).
$TTVM record threads --until-failure --runs 100 -q -o "$OUT/threads-lost-update.ttvm" --serial-in /dev/null || [ $? -eq 13 ]
# The deterministic stray write (icount clock: the same trace every time).
$TTVM record memcorrupt --cmdline work=5000 -q -o "$OUT/memcorrupt.ttvm" --serial-in /dev/null || [ $? -eq 13 ]
# A passing run, for contrast.
$TTVM record timer --cmdline ticks=20 -q -o "$OUT/timer.ttvm" --serial-in /dev/null

{
    echo "# Committed traces"
    echo
    echo "Recorded by \`scripts/record-traces.sh\` on an $VENDOR host; replayed and debugged by"
    echo "\`tests/ci_traces.rs\` on hosts of the same vendor. A trace only replays on a host with the"
    echo "same CPUID model and single-step semantics (see docs/ARCHITECTURE.md); after a"
    echo "trace-format change, re-run the script on a host of each vendor."
    echo
    echo "| trace | kernel | clock | steps | outcome | ttvm | format | bytes |"
    echo "|---|---|---|---|---|---|---|---|"
    for t in "$OUT"/*.ttvm; do
        python3 - "$t" <<'PY'
import json, subprocess, sys
t = sys.argv[1]
i = json.loads(subprocess.check_output(["target/release/ttvm", "info", "--json", t]))
print("| `%s` | %s `%s` | %s | %d | %s | %s | %d | %d |" % (
    t.split("/")[-1], i["kernel"], i["cmdline"], i["clock"], i["steps"], i["end_reason"],
    i["ttvm_version"], i["format_version"], i["file_bytes"]))
PY
    done
    echo
    echo "Recording host: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), kernel $(uname -r), KVM modules: $(ls /sys/module | grep -E '^kvm' | tr '\n' ' ')"
} > "$OUT/README.md"
cat "$OUT/README.md"
