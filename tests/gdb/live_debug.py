# Live debugging (`ttvm debug`): run forward (recording), reverse-stepi 100 through the
# recorded history, then continue forward into new territory until the guest exits.
import ttvm_gdb_helpers as h

h.run("break kmain")
h.run("continue")
h.run("delete")
start = h.icount()
h.mark("start", start, *h.when())

pcs = {}
for _ in range(300):
    pcs[h.icount()] = (h.pc(), h.gprs())
    h.run("stepi")
frontier = h.icount()
h.mark("frontier", frontier, *h.when())

for _ in range(100):
    h.run("reverse-stepi")
i = h.icount()
h.mark("back", i, h.pc(), pcs[i][0], int(h.gprs() == pcs[i][1]))

# Forward again: replayed history up to the frontier, then new instructions.
for _ in range(150):
    h.run("stepi")
i = h.icount()
h.mark("past-frontier", i, frontier)

h.run("continue")
h.mark("end", *h.when())
h.mark("stop", h.stop_kind())
