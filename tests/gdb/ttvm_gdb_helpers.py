"""Helpers for ttvm's gdb test scripts (run inside gdb: `gdb -batch -x script.py`).

Scripts print `MARK key value...` lines that the Rust tests parse; everything else gdb
prints is kept only for failure messages. Values are hex without 0x.
"""
import gdb

GPRS = ["rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rbp", "rsp",
        "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15", "rip", "eflags"]
MASK = (1 << 64) - 1


def run(cmd):
    """Runs a gdb command and returns what it printed."""
    return gdb.execute(cmd, to_string=True)


def try_run(cmd):
    """Runs a command that may fail; returns (output, error text or None)."""
    try:
        return gdb.execute(cmd, to_string=True), None
    except gdb.error as e:
        return None, str(e)


def reg(name):
    return int(gdb.selected_frame().read_register(name)) & MASK


def pc():
    return gdb.selected_frame().pc() & MASK


def gprs():
    return [reg(r) for r in GPRS]


def when():
    """(icount, history length), from `monitor when` ("icount N of L steps ...")."""
    w = run("monitor when").split()
    return int(w[1]), int(w[3])


def icount():
    """The timeline position."""
    return when()[0]


def at_end():
    i, n = when()
    return i == n


_last_stop = ["none"]


def _on_stop(ev):
    if isinstance(ev, gdb.BreakpointEvent):
        _last_stop[0] = "breakpoint"
    elif isinstance(ev, gdb.SignalEvent):
        _last_stop[0] = "signal-" + ev.stop_signal
    else:
        # A stop with no breakpoint or signal: end of a step, or (with a replay target)
        # the end of recorded history.
        _last_stop[0] = "plain"


gdb.events.stop.connect(_on_stop)


def stop_kind():
    """How the last stop was reported: breakpoint, signal-SIGxxx or plain."""
    return _last_stop[0]


def line():
    sal = gdb.selected_frame().find_sal()
    name = sal.symtab.filename if sal.symtab else "?"
    return "%s:%d" % (name, sal.line)


def func():
    return gdb.selected_frame().name() or "?"


def mark(key, *values):
    print("MARK", key, *[v if isinstance(v, str) else "%x" % v for v in values], flush=True)


def refresh():
    """After a monitor command moved the position: make gdb re-read registers."""
    run("maintenance flush register-cache")
