# memcorrupt: from the panic, "who corrupted CONFIG?": watch the corrupted field and run
# backwards; the stop is the stray ring-buffer write.
import gdb
import ttvm_gdb_helpers as h

h.run("set print finish off")
h.run("continue")  # to the end of history: the panic
h.mark("end", *h.when())
h.mark("magic-at-end", int(gdb.parse_and_eval("memcorrupt::CONFIG.magic")) & h.MASK)

h.run("watch memcorrupt::CONFIG.magic")
h.run("reverse-continue")
h.mark("culprit", h.icount(), h.pc(), h.line(), h.func())
h.mark("magic-before", int(gdb.parse_and_eval("memcorrupt::CONFIG.magic")) & h.MASK)

# Before the stray write nothing else touched the field: the next stop is the start.
h.run("reverse-continue")
h.mark("earlier", h.icount(), h.stop_kind())
