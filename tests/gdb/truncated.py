# The trace file was truncated after the server started: the history it read stays usable.
import ttvm_gdb_helpers as h

length = h.when()[1]
h.run("monitor goto %d" % (length // 2))
h.run("reverse-stepi")
h.mark("after", h.icount(), length)
