//! The bundled sample guest kernels, built by `build.rs` and embedded here.
//!
//! Each is a static ELF64 with a PVH entry note, loaded at 1 MiB; see
//! `sample-kernels/README.md` for what each does and its command-line knobs.

/// A bundled sample kernel.
pub struct SampleKernel {
    /// Its name (what `ttvm run NAME` takes).
    pub name: &'static str,
    /// One line on what it does.
    pub description: &'static str,
    /// The ELF image, with DWARF.
    pub elf: &'static [u8],
    /// Absolute path of the built ELF in OUT_DIR (with debug info, for gdb).
    pub path: &'static str,
}

macro_rules! kernel {
    ($name:literal, $desc:literal) => {
        SampleKernel {
            name: $name,
            description: $desc,
            elf: include_bytes!(concat!(env!("OUT_DIR"), "/", $name, ".elf")),
            path: concat!(env!("OUT_DIR"), "/", $name, ".elf"),
        }
    };
}

static KERNELS: &[SampleKernel] = &[
    kernel!("hello", "prints a greeting and its command line, exits 0"),
    kernel!("timer", "PIT at 1 kHz, counts ticks=N timer interrupts (default 50), exits 0"),
    kernel!(
        "threads",
        "3 preemptively switched threads race on an unlocked counter; panics on a lost update for some timer timings"
    ),
    kernel!("entropy", "prints RDTSC/RDTSCP/RDRAND/RDSEED and the RTC date, then echoes lines=N serial input lines"),
    kernel!("bench", "deterministic compute+memory workload (size=KiB, rounds=N), prints a checksum"),
    kernel!(
        "memcorrupt",
        "deterministic off-by-one ring-buffer write corrupts an adjacent config struct; panics much later"
    ),
    kernel!(
        "uaf",
        "a timer-driven watchdog frees an object a thread still uses; panics on the corruption for some timings"
    ),
    kernel!("stepprobe", "fixed instruction sequence with exported labels to pin single-step semantics"),
    kernel!("ring3", "enters user mode and makes SYSCALLs the way Linux does (STAR, LSTAR, SYSRETQ)"),
    kernel!(
        "flagprobe",
        "runs every instruction class with undefined flags and reports them: canonical (0) or host-specific (1)"
    ),
    kernel!(
        "disk",
        "finds the virtio-blk disk by a PCI scan and does read=S:N / write=S:N operations in order (ttvm run --disk)"
    ),
    kernel!(
        "ping",
        "sends numbered frames rounds=N over virtio-net, each after the previous reply, then 0; prints `ping: N replies`; retransmit=T resends after T ms, with a timing-dependent bug"
    ),
    kernel!("pong", "answers each numbered virtio-net frame with the same number (after delay=N spins); exits 0 after frame 0"),
    kernel!(
        "dirty",
        "dirties mib=N MiB (one word per page) every gap=N ms for passes=N passes; for live-checkpoint measurements"
    ),
];

/// All sample kernels.
pub fn all() -> &'static [SampleKernel] {
    KERNELS
}

/// The sample kernel called `name`.
pub fn get(name: &str) -> Option<&'static SampleKernel> {
    KERNELS.iter().find(|k| k.name == name)
}
