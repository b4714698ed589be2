# The sample kernels' interrupt stub saves the FPU with `fxsave (%rsp)`. From trace format 8
# on, that FXSAVE is a step of its own (these hosts' single-step would run the next
# instruction with it) and the image it stores shows the MXCSR_MASK every host shows
# (0x0000ffff), whatever the host CPU reports. Marks, at the first two FXSAVEs, the
# position, the instruction after one stepi and the mask in the image; then the same
# position reached backwards, with the image as it was.
import re

import ttvm_gdb_helpers as h

# Find the FXSAVE in the common stub.
start = int(h.run("info address ttvm_isr_common").split(" is at ")[1].split()[0].rstrip("."), 16)
fxsave = None
for line in h.run("x/40i %d" % start).splitlines():
    if "fxsave" in line:
        fxsave = int(re.search(r"0x[0-9a-f]+", line).group(0), 16)
        break
h.mark("fxsave-at", fxsave)
h.run("break *%d" % fxsave)
for visit in range(2):
    h.run("continue")
    at = h.icount()
    rsp = h.reg("rsp")
    h.run("stepi")
    after = h.pc()
    mask = int(h.run("x/wx %d" % (rsp + 28)).split()[-1], 16)
    h.mark("step", visit, at, h.icount(), after, mask)
h.run("delete")
h.run("reverse-stepi")
rsp = h.reg("rsp")
h.mark("back", h.icount(), h.pc())
h.run("stepi")
h.mark("again", h.icount(), h.pc(), int(h.run("x/wx %d" % (rsp + 28)).split()[-1], 16))
