//! What ttvm knows about x86, independent of how a guest is run: MSR numbers and the
//! FXSAVE layout, the CPUID model, descriptor tables and page-table walks, instruction
//! recognition, operands and disassembly, the instructions ttvm carries out itself
//! (`emulate`, `x87`, ring-3 entries and returns), which flags an instruction leaves
//! undefined and what the host CPU leaves in them (`host_cpu`, which runs the classes in
//! `flag_probe_classes.rs`, a file the `flagprobe` sample kernel includes too).

pub mod cpuid;
pub mod data_breakpoints;
pub mod descriptors;
pub mod disasm;
pub(crate) mod emulate;
pub mod fxsave;
pub mod host_cpu;
pub mod insn;
pub mod msr;
pub mod operand;
pub mod paging;
pub(crate) mod regs_dump;
pub mod shown_fpu;
pub mod undefined_flags;
pub mod user_mode;
pub mod user_return;
pub(crate) mod x87;
