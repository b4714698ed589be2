#!/usr/bin/env bash
# Re-records the bug traces committed under tests/traces/ and writes their provenance to
# tests/traces/README.md. Since trace format 3 a trace does not depend on the recording
# host's CPU (canonical undefined flags, vendor-neutral CPUID for sample kernels), so one
# set serves AMD and Intel hosts alike. Run it after a trace-format change and commit the
# result together with the new pinned stops in tests/ci_traces.rs. The frozen fixtures of
# older formats under tests/traces/formats/ are never re-recorded.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet
TTVM=target/release/ttvm
OUT=tests/traces
mkdir -p "$OUT"

# The flaky kernel, recorded until it fails (realtime clock: interrupt timing varies).
$TTVM record threads --until-failure --runs 100 -q -o "$OUT/threads-lost-update.ttvm" --serial-in /dev/null || [ $? -eq 13 ]
# The deterministic stray write (icount clock: the same trace every time).
$TTVM record memcorrupt --cmdline work=5000 -q -o "$OUT/memcorrupt.ttvm" --serial-in /dev/null || [ $? -eq 13 ]
# A passing run, for contrast.
$TTVM record timer --cmdline ticks=20 -q -o "$OUT/timer.ttvm" --serial-in /dev/null
# The network's timing-dependent bug: ping's retransmission flag is never reset, so a late
# reply's duplicate puts it one reply behind (the VMs' threads decide which runs fail).
rm -rf "$OUT/ping-retransmit"
$TTVM record --until-failure --runs 100 --vm ping --cmdline "rounds=10 retransmit=5" --vm pong -o "$OUT/ping-retransmit" || [ $? -eq 1 ]

{
    echo "# Committed traces"
    echo
    echo "Bug traces that CI replays bit-for-bit (\`tests/ci_traces.rs\`), recorded by"
    echo "\`scripts/record-traces.sh\`. They are trace format 3: the exact engine canonicalises the"
    echo "flags instructions leave undefined and the sample kernels see a vendor-neutral CPU, so"
    echo "the same files replay on AMD and Intel hosts of any generation whose KVM single-steps"
    echo "with the reference semantics (docs/ARCHITECTURE.md, \"Portable traces\"). Re-run the"
    echo "script after a trace-format change and update the pinned stops in tests/ci_traces.rs."
    echo
    echo "\`formats/\` holds frozen fixtures of the older formats (see formats/README.md), which"
    echo "\`tests/format_fixtures.rs\` checks on every host."
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
    echo "\`ping-retransmit/\` is a network recording (\`ttvm record --vm ping --vm pong\`, format 6): one"
    echo "trace per VM and the manifest of frames; \`ttvm info tests/traces/ping-retransmit\` lists them."
    echo
    echo "Recording host: $($TTVM info --json "$OUT/timer.ttvm" | python3 -c 'import json,sys; print(json.load(sys.stdin)["recorded_on"])'), Linux $(uname -r), KVM modules: $(ls /sys/module | grep -E '^kvm' | tr '\n' ' ')"
} > "$OUT/README.md"
cat "$OUT/README.md"
