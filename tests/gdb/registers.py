# What gdb shows at a stop inside a kernel: system registers, FPU/SSE state, $rip,
# disassembly, a source-level backtrace.
import ttvm_gdb_helpers as h

h.run("break kmain")
h.run("continue")
h.mark("pc", h.pc())
for line in h.run("info registers cr0 cr3 cr4 efer fs_base gs_base k_gs_base cr2 cr8").splitlines():
    w = line.split()
    h.mark("reg", w[0], int(w[1], 16))
h.mark("rip", int(gdb.parse_and_eval("$rip")) & h.MASK)
h.mark("mxcsr", h.reg("mxcsr"))
h.mark("fctrl", h.reg("fctrl"))
h.mark("xmm15", "unavailable" if "unavailable" in h.run("p $xmm15") else "ok")
insns = h.run("x/4i $pc").splitlines()
h.mark("x4i", len(insns), "arrow" if insns[0].startswith("=>") else "no-arrow")
bt = h.run("bt")
h.mark("bt", "kmain" if "kmain" in bt else "no-kmain", "source" if "bench/main.rs" in bt else "no-source")
