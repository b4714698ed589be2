# A network VM's trace served alone: go to just after a frame was delivered (NET_AT, set
# by the test), step back across the delivery and forward again; both passes must see the
# same registers at each step (the frame comes from the trace's log, not a switch).
import ttvm_gdb_helpers as h

STEPS = 8

h.run("monitor goto %d" % (NET_AT + STEPS))
h.refresh()
h.mark("start", h.icount())
fwd = []
for i in range(STEPS):
    h.run("reverse-stepi")
    h.mark("rev", h.icount(), h.pc(), *h.gprs())
for i in range(STEPS):
    h.run("stepi")
    h.mark("fwd", h.icount(), h.pc(), *h.gprs())
