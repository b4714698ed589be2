# Bad requests get gdb errors and the session stays usable; refused writes; Ctrl-C stops
# long runs in both directions.
import os
import signal
import threading
import time

import ttvm_gdb_helpers as h


def interrupt_in(seconds):
    """Sends gdb itself SIGINT (what Ctrl-C at the terminal does) after `seconds`."""
    def fire():
        time.sleep(seconds)
        os.kill(os.getpid(), signal.SIGINT)
    threading.Thread(target=fire, daemon=True).start()


h.run("break kmain")
h.run("continue")
h.run("delete")
start = h.icount()
h.mark("start", start, h.pc())

# An unmapped address (in long mode, with paging on).
out, err = h.try_run("x/4x 0xdead00000000")
h.mark("unmapped", "error" if err else "no-error", (err or out).replace(" ", "_"))
h.mark("pc-after", h.pc())

# Writes into recorded history are refused and change nothing.
rax = h.reg("rax")
out, err = h.try_run("set var $rax = %d" % (rax + 1))
h.mark("regwrite", "error" if err else "no-error", h.reg("rax") == rax and "unchanged" or "changed")
try:
    gdb.selected_inferior().write_memory(h.pc(), b"\xcc")
    h.mark("memwrite", "no-error")
except gdb.MemoryError:
    h.mark("memwrite", "error")
h.mark("code", gdb.selected_inferior().read_memory(h.pc(), 1).tobytes().hex())

# goto past the end and garbage: messages, position unchanged.
length = h.when()[1]
h.mark("goto-past", "error" if "error:" in h.run("monitor goto %d" % (length + 1)) else "ok")
h.mark("goto-garbage", "error" if "error:" in h.run("monitor goto zzz") else "ok")
h.mark("unknown", "error" if "error:" in h.run("monitor frobnicate") else "ok")
h.mark("still", h.icount())
h.run("stepi")
h.mark("stepped", h.icount())
h.mark("events", len(h.run("monitor events").splitlines()))

# Ctrl-C during a long forward run, then during a long reverse run. A read watchpoint on
# bytes nothing reads as data (the boot code) makes both runs single-step and check every
# step of the whole history (with only breakpoints, runs skip the checkpoint intervals that
# cannot reach them; a write watchpoint lets them run between dirty logs, fast enough on
# some hosts to finish before the Ctrl-C).
h.run("set language c")
h.run("rwatch *(unsigned long *)0x100000")
h.run("set language auto")
t = time.time()
interrupt_in(0.3)
h.run("continue")
h.mark("ctrlc-fwd", h.icount(), length, h.stop_kind(), "%d" % int((time.time() - t) * 1000))
h.run("monitor goto %d" % length)
h.refresh()
t = time.time()
interrupt_in(0.3)
h.run("reverse-continue")
h.mark("ctrlc-rev", h.icount(), length, h.stop_kind(), "%d" % int((time.time() - t) * 1000))
h.run("delete")
h.run("stepi")
h.mark("alive", h.icount())
