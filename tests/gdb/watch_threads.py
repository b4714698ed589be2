# The `threads` kernel loses an update and panics. From the end of history (the panic),
# find who made the stale write two ways: `monitor last-write` and `watch` +
# `reverse-continue`. Both must land on the same instruction.
import ttvm_gdb_helpers as h


def counter():
    return int(gdb.parse_and_eval("threads::COUNTER"))


h.run("continue")
end = h.when()
h.mark("end", *end)
h.mark("panicking", "yes" if "panic" in h.run("bt") else "no")
addr = int(gdb.parse_and_eval("&threads::COUNTER"))
h.mark("counter", addr, counter())

h.run("monitor last-write 0x%x 8" % addr)
h.refresh()
h.mark("lastwrite", h.icount(), h.pc(), h.line())

h.run("monitor goto %d" % end[1])
h.refresh()
h.mark("back", h.icount(), counter())

h.run("watch threads::COUNTER")
h.run("reverse-continue")
h.mark("watch", h.icount(), h.pc(), h.line(), h.stop_kind(), counter())
# Forward over the write: the counter takes the stale value the panic reported.
h.run("stepi")
h.mark("after", h.icount(), counter(), h.stop_kind())
