# Debugging Debian's kernel as a kernel developer does: gdb loads the vmlinux with DWARF
# from linux-image-*-dbg, ttvm serves the trace with --symbols System.map. Break on
# start_kernel, walk its lines forward and back, reverse-finish out of setup_arch,
# reverse-continue to start_kernel again and step back into its caller.
import gdb
import ttvm_gdb_helpers as h


def when_rip_name():
    """The function `monitor when` names at RIP (from ttvm's --symbols), or '-'."""
    for line in h.run("monitor when").splitlines():
        if line.startswith("RIP ") and " <" in line:
            return line.split(" <")[1].split(">")[0]
    return "-"


h.run("break start_kernel")
h.run("continue")
h.mark("start", h.icount(), h.pc(), h.func(), h.stop_kind(), when_rip_name())
older = gdb.selected_frame().older()
h.mark("caller", (older.name() if older else None) or "?")

lines = []
for i in range(3):
    h.run("next")
    lines.append((h.icount(), h.pc(), h.line()))
    h.mark("next", i, *lines[-1])
h.run("reverse-next")
h.mark("reverse-next", h.icount(), h.pc(), h.line(), h.func())

h.run("break setup_arch")
h.run("continue")
h.mark("setup-arch", h.icount(), h.func(), when_rip_name())
h.run("reverse-finish")
h.mark("reverse-finish", h.icount(), h.pc(), h.func(), when_rip_name())

h.run("reverse-continue")
h.mark("reverse-continue", h.icount(), h.pc(), h.func(), h.stop_kind())
h.run("reverse-stepi")
h.mark("before-start", h.icount(), h.func(), when_rip_name())
