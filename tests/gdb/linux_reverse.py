# QEMU's reverse-debugging check inside Linux (no symbols: Debian's vmlinux is stripped):
# from a point inside start_kernel's early setup, stepi ten times, reverse-stepi ten times
# with every register equal to the forward values, stepi again; then breakpoints on those
# PCs, to the end of history, reverse-continue to the last one.
import gdb
import os
import ttvm_gdb_helpers as h

STEPS = 10
h.run("monitor goto %s" % os.environ.get("TTVM_LINUX_GOTO", "40000"))
h.refresh()
h.mark("start", h.icount())

pcs = []
for i in range(STEPS):
    pcs.append(h.pc())
    h.mark("fwd", i, h.pc(), *h.gprs())
    h.run("stepi")
h.mark("fwd", STEPS, h.pc(), *h.gprs())
for i in reversed(range(STEPS)):
    h.run("reverse-stepi")
    h.mark("rev", i, h.pc(), *h.gprs())
for i in range(STEPS):
    h.run("stepi")
    h.mark("again", i + 1, h.pc(), *h.gprs())

# To the end of history (this code is a loop: continuing would stop at every iteration).
h.run("monitor goto %d" % h.when()[1])
h.refresh()
h.mark("end", *h.when())
for p in sorted(set(pcs)):
    h.run("break *0x%x" % p)
h.run("reverse-continue")
h.mark("rc", h.icount(), h.pc(), h.stop_kind())
# Going forward from there, the next stop is a later hit or the end: nothing in between
# was missed by the backward run.
h.run("continue")
h.mark("after", h.icount(), *h.when())
