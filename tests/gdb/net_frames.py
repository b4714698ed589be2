# monitor frames on one VM of a network recording, at the start and after a goto.
import os
import ttvm_gdb_helpers as h

print(h.run("monitor frames"), flush=True)
h.run("monitor goto %s" % os.environ["TTVM_FRAMES_AT"])
print("AFTER-GOTO", flush=True)
print(h.run("monitor frames"), flush=True)
