# `monitor disk-history` against a trace of the `disk` kernel: find the request that wrote
# sector 3, go to where the guest queued it, then run to the end of history and back, so
# the timeline replays the disk's completions forwards and backwards.
import re
import ttvm_gdb_helpers as h

out = h.run("monitor disk-history 3")
print(out)
queued = int(re.search(r"queued at icount (\d+)", out).group(1))
h.mark("queued", queued)
h.mark("never", "yes" if "never written" in h.run("monitor disk-history 40") else "no")
h.run("monitor goto %d" % queued)
h.refresh()
h.mark("at", h.icount(), h.pc())
h.mark("func", h.run("info symbol $pc").split()[0])
h.run("continue")
end = h.icount()
h.run("reverse-stepi")
h.mark("end", end, h.icount())
h.run("monitor goto %d" % queued)
h.refresh()
h.mark("again", h.icount(), h.pc())
