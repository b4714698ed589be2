# Network gdb, the VM that moves: waits until the other VM's gdb is connected, then
# `monitor goto` to TTVM_NET_AT and tells the other one to look.
import os
import time
import ttvm_gdb_helpers as h

sync = os.environ["TTVM_NET_SYNC"]
while not os.path.exists(os.path.join(sync, "follower-connected")):
    time.sleep(0.05)
print(h.run("monitor goto %s" % os.environ["TTVM_NET_AT"]), flush=True)
open(os.path.join(sync, "moved"), "w").close()
h.run("detach")
