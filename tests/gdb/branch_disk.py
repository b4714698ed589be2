# A branch of a disk trace from gdb: go to where the guest queued its write, arm a branch
# there and continue: the branch records the write and the reads after it, the disk going on
# as the trace held it at that point.
import os
import re
import ttvm_gdb_helpers as h

queued = int(re.search(r"queued at icount (\d+)", h.run("monitor disk-history 3")).group(1))
h.run("monitor goto %d" % queued)
print(h.run("monitor branch " + os.environ["TTVM_BRANCH_FILE"]), flush=True)
h.run("continue")
h.mark("continued", "done")
