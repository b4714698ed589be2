# gdb disconnects and connects again to the same server: the session goes on where the
# first one left the timeline. The address comes from the `python server = ...` line the
# test passes before this script.
import ttvm_gdb_helpers as h

h.run("stepi")
h.run("stepi")
first = h.icount()
h.mark("first", first)
h.run("disconnect")
h.run("target remote %s" % server)
h.mark("second", h.icount())
h.run("stepi")
h.mark("stepped", h.icount())
h.run("detach")
