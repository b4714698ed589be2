# A read that faults is no read: the `ring3` kernel's last user instruction,
# `mov rax, [0x100000]`, reads a supervisor-only page and faults, so the CPU never reads it
# and `rwatch` on that quadword fires nowhere (reverse-continue from the end reaches the
# start of history), as a hardware watchpoint would not. LAST, the quadword stepping says
# was read last, is the control: reverse-continue stops on that read.
import ttvm_gdb_helpers as h

h.run("set language c")
end = h.when()[1]
h.run("monitor goto %d" % end)
h.refresh()
h.run("rwatch *(unsigned long *)0x100000")
h.run("reverse-continue")
h.mark("probe", h.icount(), h.stop_kind())

h.run("delete")
h.run("monitor goto %d" % end)
h.refresh()
h.run("rwatch *(unsigned long *)0x%x" % LAST)
h.run("reverse-continue")
h.mark("last", h.icount(), h.stop_kind())
