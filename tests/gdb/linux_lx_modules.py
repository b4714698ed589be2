# Linux's gdb scripts following module loads through a replay: at the start of a recording
# made before init loads its modules, lx-lsmod lists none; `lx-symbols DIR` (DIR holding
# Debian's .ko files) leaves its breakpoint on do_init_module, so `continue` to the end
# loads each module's symbols as the replay passes its load; at the end lx-lsmod lists
# them and gdb names a module function. vmlinux-gdb.py is sourced before this script;
# TTVM_LX_MODULES is DIR, TTVM_LX_BUILD_DIR holds the "vmlinux" lx-symbols reloads.
import os
import gdb
import ttvm_gdb_helpers as h


def modules():
    """The module names lx-lsmod lists (the lines after its header)."""
    lines = h.run("lx-lsmod").splitlines()
    return [l.split()[1] for l in lines[1:] if l.startswith("0x")]


h.mark("start-modules", len(modules()))
h.run("cd %s" % os.environ["TTVM_LX_BUILD_DIR"])
out, err = h.try_run("lx-symbols %s" % os.environ["TTVM_LX_MODULES"])
h.mark("symbols", "ok" if err is None else "error: %s" % err)
# lx-symbols prints "loading @ADDR: PATH" from its breakpoint's stop() as modules load.
out, err = h.try_run("continue")
loaded = [l.split("/")[-1] for l in (out or "").splitlines() if l.startswith("loading @")]
h.mark("loaded-on-the-way", ",".join(loaded) or "none", "error: %s" % err if err else "ok")
h.mark("end", "yes" if h.at_end() else "no")
h.mark("end-modules", ",".join(sorted(modules())))
where = h.run("info symbol register_virtio_driver")
h.mark("module-symbol", "virtio.ko" if "virtio.ko" in where else where.strip().replace(" ", "_"))
