# QEMU's reverse-debugging check (tests/functional/reverse_debugging.py), against ttvm:
# stepi ten times, reverse-stepi ten times, stepi ten times again; then breakpoints on
# those PCs, run to the end of history, reverse-continue.
import ttvm_gdb_helpers as h

STEPS = 10

h.run("break kmain")
h.run("continue")
h.run("delete")
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

for p in sorted(set(pcs)):
    h.run("break *0x%x" % p)

# Forward to the end of history; a breakpoint may be hit again on the way.
for _ in range(100):
    h.run("continue")
    h.mark("cont", h.icount(), h.pc(), h.stop_kind())
    if h.at_end():
        break
h.mark("end", *h.when())

h.run("reverse-continue")
h.mark("rc", h.icount(), h.pc(), h.stop_kind())
