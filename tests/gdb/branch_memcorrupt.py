# memcorrupt, branched: stop at the stray write, arm a branch, undo the write, continue.
# The branch must end with status 0 where the recording panicked.
import gdb
import os
import ttvm_gdb_helpers as h

branch = os.environ["TTVM_BRANCH_FILE"]
MAGIC = 0xC0F160005AFE0001

# Before `monitor branch`, history is read-only.
out, err = h.try_run("set var memcorrupt::CONFIG.scale = 7")
h.mark("write-before-branch", "refused" if err else "allowed")

h.run("watch memcorrupt::CONFIG.magic")
h.run("continue")  # forward to the stray write
h.mark("stray", h.icount(), int(gdb.parse_and_eval("memcorrupt::CONFIG.magic")) & h.MASK)
# The event's two words may be stored by two instructions: let the second happen too.
if int(gdb.parse_and_eval("memcorrupt::CONFIG.limit")) == 4096:
    h.run("delete")
    h.run("watch memcorrupt::CONFIG.limit")
    h.run("continue")
h.run("delete")

print(h.run("monitor branch " + branch), flush=True)
h.run("set var memcorrupt::CONFIG.magic = %d" % MAGIC)
h.run("set var memcorrupt::CONFIG.limit = 4096")
rax = h.reg("rax")
out, err = h.try_run("set var $rax = %d" % rax)  # a register write, allowed now
h.mark("regwrite-after-branch", "refused" if err else "allowed", h.reg("rax") == rax and "same" or "changed")
# The rest of the vCPU a branch may change: an SSE register and FS base (both put back,
# so the branch goes on as before); a control register it may not, refused by name.
xmm = int(gdb.parse_and_eval("$xmm15.v2_int64[0]"))
fs_base = h.reg("fs_base")
h.run("set var $xmm15.v2_int64[0] = 0x1234567890abcdef")
h.run("set var $fs_base = 0x5000")
h.mark("other-regs", "%x" % int(gdb.parse_and_eval("$xmm15.v2_int64[0]")), "%x" % h.reg("fs_base"))
h.run("set var $xmm15.v2_int64[0] = %d" % xmm)
h.run("set var $fs_base = %d" % fs_base)
cr3 = h.reg("cr3")
out, err = h.try_run("set var $cr3 = %d" % (cr3 + 0x1000))
h.mark("cr3-write", "refused" if err else "allowed", "same" if h.reg("cr3") == cr3 else "changed")
h.mark("undone", int(gdb.parse_and_eval("memcorrupt::CONFIG.magic")) & h.MASK,
       int(gdb.parse_and_eval("memcorrupt::CONFIG.limit")))
# Going back from the edited machine would replay the edit as recorded: refused, no move.
before = h.icount()
h.try_run("reverse-stepi")
h.mark("back-after-edit", before, h.icount())
h.run("continue")
# A recording session reports the guest's exit as the end of its history.
h.mark("continued", *h.when())
h.mark("end-func", h.func())

# One history over the family: the parent's steps up to the branch point B, then the
# branch's as B+1, B+2...
import re
end, length = h.when()
branch_at = int(re.search(r"starts at icount (\d+)", h.run("monitor when")).group(1))
h.mark("family", end, length, branch_at)

def magic():
    return int(gdb.parse_and_eval("memcorrupt::CONFIG.magic")) & h.MASK

# goto into the parent's history: its machine there, the stray write in place.
h.run("monitor goto %d" % branch_at)
h.refresh()
h.mark("parent-at-branch-point", h.icount(), magic(), "parent" if "parent's history" in h.run("monitor when") else "branch")
# Forward across the branch point: the branch's first step, the write undone.
h.run("stepi")
h.mark("across-forward", h.icount(), magic(), "parent" if "parent's history" in h.run("monitor when") else "branch")
# Back across it: the branch point (the branch's start), then the parent's step before it.
h.run("reverse-stepi")
h.run("reverse-stepi")
h.mark("across-back", h.icount(), "parent" if "parent's history" in h.run("monitor when") else "branch")
# From the branch's end, a watchpoint found going back: the stray write in the parent.
h.run("monitor goto %d" % end)
h.refresh()
h.run("watch memcorrupt::CONFIG.magic")
h.run("reverse-continue")
h.mark("watch-back", h.icount(), "parent" if "parent's history" in h.run("monitor when") else "branch")
h.run("delete")
# And forward again through the branch point to the branch's end.
h.run("continue")
h.mark("forward-to-end", *h.when())

# With nothing to stop it, going back runs to the start of the family's history.
h.run("reverse-continue")
h.mark("back", *h.when())
