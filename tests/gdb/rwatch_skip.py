# Read watchpoints through gdb on the `bench` kernel: from the end of history, `rwatch` +
# `reverse-continue` on a quadword last read far back (FAR). The test compares the stop with
# single-stepping's; `monitor info` says how many checkpoint intervals the run passed over
# unreplayed and how this host looks out for reads in free runs.
import ttvm_gdb_helpers as h

# Casts below are C syntax; the kernel is Rust.
h.run("set language c")
h.run("monitor goto %d" % h.when()[1])
h.refresh()
h.run("rwatch *(unsigned long *)0x%x" % FAR)
h.run("reverse-continue")
h.mark("far", h.icount(), h.stop_kind())

for line in h.run("monitor info").splitlines():
    if line.startswith("skips:"):
        h.mark("skips", line.split()[1])
