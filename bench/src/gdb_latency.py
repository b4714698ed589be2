# Run inside `gdb -batch` by `ttvm bench`: times reverse-debugging commands against a
# ttvm or QEMU gdb stub. Reads OPS_FILE (JSON list of operations) and TARGET ("ttvm" or
# "qemu"), prints one `MARK kind values...` line per measurement (flushed at once, so a
# session that hangs keeps what it measured). Times are milliseconds of wall time around
# the gdb command, so they include what gdb does on each stop (registers, frame, source).
import json
import re
import time

import gdb


def run(cmd):
    return gdb.execute(cmd, to_string=True)


def mark(*values):
    print("MARK", *[str(v) for v in values], flush=True)


def icount():
    """The target's current position: ttvm's icount, or QEMU's replay instruction count."""
    if TARGET == "ttvm":
        m = re.search(r"icount (\d+) of", run("monitor when"))
    else:
        m = re.search(r"instruction count = (\d+)", run("monitor info replay"))
    return int(m.group(1)) if m else -1


def pc():
    return int(gdb.parse_and_eval("$pc")) & ((1 << 64) - 1)


def timed(cmd):
    t = time.perf_counter()
    out = run(cmd)
    return (time.perf_counter() - t) * 1e3, out


def position(n):
    """Moves to icount n. ttvm seeks; QEMU can only break on a later icount and continue."""
    if TARGET == "ttvm":
        ms, out = timed("monitor goto %d" % n)
        if any(line.startswith("error") for line in out.splitlines()):
            mark("error", "goto", n, out.strip().replace("\n", " "))
        run("maintenance flush register-cache")
    else:
        t = time.perf_counter()
        run("monitor replay_break %d" % n)
        run("continue")
        ms = (time.perf_counter() - t) * 1e3
    return ms


with open(OPS_FILE) as f:
    OPS = json.load(f)

# The stub may still be starting (QEMU opens its port a moment after it starts).
connected = False
for attempt in range(200):
    try:
        run("target remote %s" % ADDR)
        connected = True
        break
    except gdb.error:
        time.sleep(0.05)
if not connected:
    mark("error", "connect", ADDR)
    OPS = []
else:
    mark("ready", icount())
for op in OPS:
    kind = op["op"]
    try:
        if kind == "break_run":
            run("break %s" % op["symbol"])
            run("continue")
            run("delete")
            mark("at", op["symbol"], icount(), "%x" % pc())
        elif kind == "pos":
            ms = position(op["icount"])
            mark("pos", op["tag"], op["icount"], "%.3f" % ms, icount())
        elif kind == "rsi":
            for i in range(op["count"]):
                ms, _ = timed("reverse-stepi")
                mark("rsi", op["tag"], i, "%.3f" % ms, icount())
        elif kind == "rc":
            run("break *0x%x" % op["addr"])
            ms, out = timed("reverse-continue")
            mark("rc", op["tag"], "%.3f" % ms, icount(), "%x" % pc())
            run("delete")
        elif kind == "goto":
            ms, out = timed("monitor goto %d" % op["icount"])
            mark("goto", op["icount"], "%.3f" % ms, icount())
    except gdb.error as e:
        mark("error", kind, str(e).replace("\n", " "))
mark("done")
