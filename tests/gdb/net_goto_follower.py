# Network gdb, a VM moved by another's `monitor goto`: its position before and after.
import os
import time
import ttvm_gdb_helpers as h

sync = os.environ["TTVM_NET_SYNC"]
print("BEFORE", h.run("monitor when"), flush=True)
open(os.path.join(sync, "follower-connected"), "w").close()
while not os.path.exists(os.path.join(sync, "moved")):
    time.sleep(0.05)
print("AFTER", h.run("monitor when"), flush=True)
h.run("maintenance flush register-cache")
print("MARK follower-rip %x" % h.pc(), flush=True)
h.run("detach")
