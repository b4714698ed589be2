# `monitor goto` to positions spread over the history, each followed by a fingerprint of
# what gdb shows there: every register, the stack around RSP and 4 KiB of the bench
# kernel's data. Run against `replay --gdb` with and without `--step-all`: the fingerprints
# must agree, and the statistics say how many steps each single-stepped.
import hashlib

import ttvm_gdb_helpers as h

length = h.when()[1]
for i in range(1, 9):
    p = length * i // 9 + 1234 * i
    h.run("monitor goto %d" % p)
    h.refresh()
    seen = h.run("info registers") + h.run("x/64gx $rsp") + h.run("x/512gx 0x200000")
    h.mark("at", p, h.icount(), hashlib.sha1(seen.encode()).hexdigest()[:16])
for line in h.run("monitor info").splitlines():
    if line.startswith("statistics:"):
        h.mark("replayed", int(line.split()[1]))
    if line.startswith("seeks:"):
        h.mark("seeks", int(line.split()[1]))
    if line.startswith("watching:"):
        h.mark("data-breakpoints", int("data breakpoints in free runs" in line))
        h.mark("watch-stepped", int("single-stepping" in line))
