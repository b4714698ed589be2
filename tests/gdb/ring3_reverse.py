# Reverse execution across ring transitions in the `ring3` kernel (a trace of user mode,
# stepped through the guest's #DB): for each of SYSCALL (user -> kernel), SYSRETQ
# (kernel -> user) and the user read of a kernel page (user #PF -> handler), step across it
# and back, marking every register gdb knows (general, segment selectors and bases, system
# registers, x87/SSE) at each position. The test compares the marks.
import gdb
import ttvm_gdb_helpers as h

# User code (sample-kernels/ring3/main.rs, copied to 0x200000): the first SYSCALL, the
# instruction SYSRETQ returns to, the read that faults.
SYSCALL = 0x200013
AFTER_SYSRET = 0x200015
FAULTING_READ = 0x20001E
STEPS = 3


def all_registers():
    """name=value for every register of the target description, values without spaces."""
    out = []
    for r in gdb.selected_frame().architecture().registers():
        v = gdb.selected_frame().read_register(r.name)
        try:
            text = "%x" % (int(v) & ((1 << 128) - 1))
        except gdb.error:
            text = v.format_string(format="x")
        out.append("%s=%s" % (r.name, "".join(text.split())))
    return out


def state(key, i):
    h.mark(key, i, h.icount(), *all_registers())


def across(name, bp, before):
    """From the stop at `bp`: `before` reverse-stepis, then stepis forward to STEPS past the
    stop, then reverse-stepis back over all of them, marking every position."""
    h.run("break *0x%x" % bp)
    h.run("continue")
    h.run("delete")
    state(name + "-at", 0)
    for i in range(1, before + 1):
        h.run("reverse-stepi")
        state(name + "-rev", -i)
    for i in range(-before + 1, STEPS + 1):
        h.run("stepi")
        state(name + "-fwd", i)
    # One step further, unmarked, so that every marked position is also reached backwards.
    h.run("stepi")
    for i in range(STEPS, -before - 1, -1):
        h.run("reverse-stepi")
        state(name + "-rev", i)


across("syscall", SYSCALL, 0)
across("sysret", AFTER_SYSRET, 2)
across("fault", FAULTING_READ, 0)
