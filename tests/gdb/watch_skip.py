# Write watchpoints through gdb on the `bench` kernel: from the end of history,
# `watch` + `reverse-continue` on a word last changed far back (FAR) and on 16 bytes that
# never change (NEVER), then `continue` from the start with the second. The test compares
# the stops with single-stepping's; `monitor info` says how many checkpoint intervals the
# runs passed over unreplayed.
import ttvm_gdb_helpers as h

# Casts below are C syntax; the kernel is Rust.
h.run("set language c")
h.run("continue")
h.mark("end", *h.when())

h.run("watch *(unsigned long *)0x%x" % FAR)
h.run("reverse-continue")
h.mark("far", h.icount(), h.stop_kind())
h.run("delete")

h.run("monitor goto %d" % h.when()[1])
h.refresh()
h.run("watch *(char (*)[16])0x%x" % NEVER)
h.run("reverse-continue")
h.mark("never_back", h.icount())
# Casts below are C syntax; the kernel is Rust.
h.run("set language c")
h.run("continue")
h.mark("never_forward", *h.when())

for line in h.run("monitor info").splitlines():
    if line.startswith("skips:"):
        h.mark("skips", line.split()[1])
