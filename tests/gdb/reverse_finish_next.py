# reverse-next over calls and reverse-finish out of a function land where gdb's forward
# commands came from. Set by the test: ROUNDS_LINE, the bench/main.rs line of
# `cmdline.u64("rounds", ...)` (a line made of a call).
import ttvm_gdb_helpers as h

# gdb 13 can crash printing some Rust return values after `finish`.
h.run("set print finish off")

h.run("break bench/main.rs:%d" % ROUNDS_LINE)
h.run("continue")
h.run("delete")
h.mark("next", 0, h.pc(), h.line(), h.func())
for i in range(3):
    h.run("next")
    h.mark("next", i + 1, h.pc(), h.line(), h.func())
for i in reversed(range(3)):
    h.run("reverse-next")
    h.mark("rnext", i, h.pc(), h.line(), h.func())

# Into Cmdline::get (called from Cmdline::u64), a few instructions in, then back out.
h.run("break ttvm_kernel_support::cmdline::Cmdline::get")
h.run("continue")
h.run("delete")
ret = gdb.selected_frame().older().pc()
h.mark("inside", h.pc(), ret, h.func())
for _ in range(3):
    h.run("stepi")
h.run("reverse-finish")
insns = h.run("x/2i $pc").splitlines()
second = int(insns[1].split()[0].rstrip(":"), 16)
h.mark("rfinish", h.pc(), h.func(), second, insns[0].split(">:")[-1].split()[0])
# Forward from there: stepi enters the function again, finish returns to `ret`.
h.run("stepi")
h.mark("stepi", h.pc(), gdb.selected_frame().older().pc(), h.func())
h.run("finish")
h.mark("finish", h.pc(), h.func())
