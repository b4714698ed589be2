# Function names in monitor output: `monitor goto` and `monitor when` name the function at
# RIP when the server knows the kernel's symbols.
import ttvm_gdb_helpers as h

out = h.run("monitor goto 15000")
h.mark("goto", 1 if " <" in out else 0)
for line in h.run("monitor when").splitlines():
    if line.startswith("RIP "):
        name = line.split(" <")[1].split(">")[0] if " <" in line else "-"
        h.mark("rip-name", name.split("+")[0])
