# Linux's own gdb scripts against a replay: lx-dmesg at two points of history shows the log
# as it was at each (the earlier a prefix of the later), lx-ps / lx-lsmod / lx-symbols /
# lx-version run. vmlinux-gdb.py is sourced before this script (gdb -ex), as a user's
# .gdbinit would; TTVM_LX_EARLY and TTVM_LX_LATE are the two icounts.
import os
import gdb
import ttvm_gdb_helpers as h

def dmesg_at(icount):
    h.run("monitor goto %s" % icount)
    h.refresh()
    return [l for l in h.run("lx-dmesg").splitlines() if l.startswith("[")]

early = dmesg_at(os.environ["TTVM_LX_EARLY"])
late = dmesg_at(os.environ["TTVM_LX_LATE"])
h.mark("dmesg", len(early), len(late), "prefix" if late[:len(early)] == early else "differs")
print("EARLY-LAST", early[-1] if early else "", flush=True)
print("LATE-LAST", late[-1] if late else "", flush=True)
h.mark("version", "linux" if h.run("lx-version").startswith("Linux version 6.1") else "other")
# The scripts tell QEMU's stub (gdb thread N = CPU N-1) from kgdb by `monitor info version`;
# $lx_current() and lx-cpus need that answer.
h.mark("server", h.run("monitor info version").split()[0])
try:
    h.mark("current", "comm=" + gdb.parse_and_eval("$lx_current()")["comm"].string())
except gdb.error as e:
    h.mark("current", "error: %s" % e)
out, err = h.try_run("lx-cpus")
h.mark("cpus", "ok" if err is None and "Possible CPUs" in out else "error: %s" % err)
ps = h.run("lx-ps").splitlines()
h.mark("ps", len(ps), "swapper" if any(l.split()[-1:] in (["swapper"], ["swapper/0"]) for l in ps) else "none")
out, err = h.try_run("lx-lsmod")
h.mark("lsmod", "ok" if err is None and "Module" in out else "error: %s" % err)
# lx-symbols reloads the kernel from "vmlinux" in gdb's working directory, as in a build tree.
h.run("cd %s" % os.environ["TTVM_LX_BUILD_DIR"])
out, err = h.try_run("lx-symbols")
h.mark("symbols", "ok" if err is None else "error: %s" % err)
