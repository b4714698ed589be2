# reverse-continue over a breakpoint hit several times stops at each hit, most recent
# first; with no breakpoints it runs to the start of history (replaylog begin).
import ttvm_gdb_helpers as h

h.run("break ttvm_kernel_support::serial::write_str")
hits = 0
for _ in range(200):
    h.run("continue")
    if h.at_end():
        break
    hits += 1
    h.mark("hit", h.icount(), h.pc(), h.stop_kind())
h.mark("end", *h.when())

for _ in range(hits):
    h.run("reverse-continue")
    h.mark("back", h.icount(), h.pc(), h.stop_kind())

h.run("delete")
print("MARK-BEFORE-START", flush=True)
h.run("reverse-continue")
h.mark("start", h.icount(), h.pc(), h.stop_kind())
# Going further back is refused the same way, without moving.
h.run("reverse-stepi")
h.mark("again", h.icount(), h.pc(), h.stop_kind())
