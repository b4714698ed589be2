# threads: from the "lost update" panic, reconstruct the interleaving that lost it.
#
# The stale write usually stores the value COUNTER already holds (A read v, B wrote v+1,
# A writes v+1), so a `watch`, which reports changes, cannot see it; an access watchpoint
# sees every read and write. Going back from the panic with `awatch COUNTER` visits:
# the panicking thread's check and stale write, the other threads' accesses since, and
# finally the panicking thread's own read of the value it wrote back.
import gdb
import ttvm_gdb_helpers as h
import os

# The line where a thread reads COUNTER before its unlocked increment.
_SRC = os.path.join(os.path.dirname(h.__file__), "..", "..", "sample-kernels", "threads", "main.rs")
with open(_SRC) as _f:
    READ_LINE = ":%d" % (next(i for i, l in enumerate(_f) if l.strip().startswith("let v = addr_of!(COUNTER)")) + 1)

CURRENT = "ttvm_kernel_support::thread::CURRENT"


def thread():
    return int(gdb.parse_and_eval(CURRENT))


def counter():
    return int(gdb.parse_and_eval("threads::COUNTER")) & h.MASK


h.run("set print finish off")
h.run("continue")
h.mark("end", *h.when())
victim = thread()
h.mark("panicking-thread", victim)

h.run("awatch threads::COUNTER")
stops = []
for _ in range(40):
    h.run("reverse-continue")
    if h.stop_kind() != "breakpoint":
        break
    stops.append((h.icount(), h.line(), thread(), counter()))
    h.mark("access", *stops[-1])
    # The panicking thread's read of `v` ends the story.
    if thread() == victim and len(stops) > 2 and h.line().endswith(READ_LINE):
        break
