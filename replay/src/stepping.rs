//! The single-step semantics a trace depends on, measured on this host.
//!
//! Replay is only faithful on a host whose KVM steps the guest exactly as the recording
//! host did: whether exception and interrupt delivery merge with the handler's first
//! instruction, whether IRETQ merges with the next instruction, whether the guest sees TF,
//! whether a single-stepped HLT halts. [`host_signature`] measures these with a tiny
//! long-mode guest (a dozen steps, a few milliseconds, once per process); the result is
//! stored in every trace header and compared on replay, so a trace from a host that steps
//! differently is refused rather than replayed wrongly.

use std::sync::OnceLock;

use kvm_bindings::{kvm_regs, kvm_segment};
use kvm_ioctls::VcpuExit;
use ttvm_vmm::boot::linux::flat_segment;
use ttvm_vmm::memory::MIN_RAM;
use ttvm_vmm::vm::Vm;

use crate::engine::Ring3Steps;

mod ring3;

/// Version of the probe below; part of the signature.
const PROBE_VERSION: u32 = 1;

/// The semantics DESIGN.md documents for the reference hosts (and the engine relies on for
/// its icount definition); `tests/stepping_semantics.rs` pins them with a full kernel. The
/// last field says how ring 3 is stepped (`stepping/ring3.rs`); signatures from before it
/// existed lack it (their recordings stopped before user mode).
pub const REFERENCE_SIGNATURE: &str =
    "ttvm-step/1 exception-merges-handler=yes irq-merges-handler=yes iretq-merges-next=yes tf-visible=no hlt-halts=no ring3=db-trap";

/// Where the ring-3 field starts in a signature.
const RING3_FIELD: &str = " ring3=";

/// How a trace recorded with `signature` steps ring 3.
pub fn ring3_steps(signature: &str) -> Ring3Steps {
    match signature.split(RING3_FIELD).nth(1) {
        Some("db-trap") => Ring3Steps::DebugTrap,
        Some("kvm") => Ring3Steps::KvmExits,
        _ => Ring3Steps::Refused,
    }
}

/// Whether a trace recorded with signature `recorded` replays faithfully on a host with
/// signature `host`: everything but the ring-3 field must be the same. A trace without the
/// field never stepped ring 3; one whose ring-3 method differs from the host's replays up
/// to its first user-mode step, which is refused then ([`StepRules::for_replay`]).
///
/// [`StepRules::for_replay`]: crate::engine::StepRules::for_replay
pub fn compatible(recorded: &str, host: &str) -> bool {
    recorded.split(RING3_FIELD).next() == host.split(RING3_FIELD).next()
}

// Guest layout (guest-physical = guest-virtual, identity mapped).
const CODE: u64 = 0x1000;
const UD_HANDLER: u64 = 0x1100;
const IRQ_HANDLER: u64 = 0x1200;
const IDT: u64 = 0x2000;
const GDT: u64 = 0x3000;
const PML4: u64 = 0x4000;
const STACK_TOP: u64 = 0x9000;
const IRQ_VECTOR: u8 = 0x20;

/// The probe's code (see the offsets used in `probe`).
const PROGRAM: &[(u64, &[u8])] = &[
    (
        CODE,
        &[
            0x90, // 0x1000 nop
            0x9c, // 0x1001 pushfq
            0x58, // 0x1002 pop rax
            0x0f, 0x0b, // 0x1003 ud2
            0x90, // 0x1005 nop
            0x90, // 0x1006 nop
            0xfb, // 0x1007 sti
            0x90, // 0x1008 nop
            0xf4, // 0x1009 hlt
            0x90, // 0x100a nop
            0x90, // 0x100b nop
            0xeb, 0xfe, // 0x100c jmp $
        ],
    ),
    (UD_HANDLER, &[0x90, 0x48, 0x83, 0x04, 0x24, 0x02, 0x48, 0xcf]), // nop; add qword [rsp], 2; iretq
    (IRQ_HANDLER, &[0x90, 0x48, 0xcf]),                              // nop; iretq
];

fn yes(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}

fn idt_gate(handler: u64) -> [u8; 16] {
    let mut g = [0u8; 16];
    g[0..2].copy_from_slice(&(handler as u16).to_le_bytes());
    g[2..4].copy_from_slice(&0x08u16.to_le_bytes());
    g[5] = 0x8e; // present, DPL 0, 64-bit interrupt gate
    g[6..8].copy_from_slice(&((handler >> 16) as u16).to_le_bytes());
    g[8..12].copy_from_slice(&((handler >> 32) as u32).to_le_bytes());
    g
}

/// A probe machine in 64-bit ring 0 at `CODE` with `program` in memory, an IDT with the
/// #UD and IRQ handlers, a flat GDT and the first 2 MiB identity-mapped.
fn probe_machine(program: &[(u64, &[u8])]) -> Result<Vm, String> {
    let mut vm = Vm::new(MIN_RAM, ttvm_vmm::cpuid::CpuVendor::Host).map_err(|e| e.to_string())?;
    {
        let ram = vm.ram_mut();
        let w = |ram: &mut ttvm_vmm::memory::GuestRam, a: u64, b: &[u8]| ram.write(a, b).map_err(|e| e.to_string());
        for (addr, code) in program {
            w(ram, *addr, code)?;
        }
        w(ram, IDT + 6 * 16, &idt_gate(UD_HANDLER))?;
        w(ram, IDT + u64::from(IRQ_VECTOR) * 16, &idt_gate(IRQ_HANDLER))?;
        for (i, d) in [0u64, 0x00af_9a00_0000_ffff, 0x00cf_9200_0000_ffff].iter().enumerate() {
            w(ram, GDT + i as u64 * 8, &d.to_le_bytes())?;
        }
        // PML4 -> PDPT -> PD with one 2 MiB identity page.
        w(ram, PML4, &(PML4 + 0x1000 + 3).to_le_bytes())?;
        w(ram, PML4 + 0x1000, &(PML4 + 0x2000 + 3).to_le_bytes())?;
        w(ram, PML4 + 0x2000, &0x83u64.to_le_bytes())?;
    }
    let vcpu = vm.vcpu_mut();
    let mut sregs = vcpu.sregs();
    sregs.cs = flat_segment(0x08, 0xb, 1, 0);
    let data = flat_segment(0x10, 0x3, 0, 1);
    (sregs.ds, sregs.es, sregs.fs, sregs.gs, sregs.ss) = (data, data, data, data, data);
    sregs.tr = kvm_segment { limit: 0x67, type_: 0xb, present: 1, ..Default::default() };
    sregs.gdt.base = GDT;
    sregs.gdt.limit = 23;
    sregs.idt.base = IDT;
    sregs.idt.limit = 0xfff;
    sregs.cr0 = 0x8000_0011; // PG | ET | PE
    sregs.cr3 = PML4;
    sregs.cr4 = 0x20; // PAE
    sregs.efer = 0x500; // LME | LMA
    let regs = kvm_regs { rip: CODE, rsp: STACK_TOP, rflags: 0x2, ..Default::default() };
    vcpu.init_registers(&regs, &sregs).map_err(|e| e.to_string())?;
    Ok(vm)
}

/// Measures this host's semantics. Errors (no KVM) are returned as text.
fn probe() -> Result<String, String> {
    let mut vm = probe_machine(PROGRAM)?;
    let vcpu = vm.vcpu_mut();
    vcpu.set_single_step(true).map_err(|e| e.to_string())?;

    let step = |vcpu: &mut ttvm_vmm::vcpu::Vcpu| -> Result<(bool, u64), String> {
        // (debug exit?, RIP after)
        let debug = matches!(vcpu.run().map_err(|e| e.to_string())?, VcpuExit::Debug(_));
        Ok((debug, vcpu.rip()))
    };
    let at = |vcpu: &mut ttvm_vmm::vcpu::Vcpu, expect_rip: u64| -> Result<(), String> {
        let (_, rip) = step(vcpu)?;
        if rip != expect_rip {
            return Err(format!("stepping probe lost its way: RIP {rip:#x}, expected {expect_rip:#x}"));
        }
        Ok(())
    };
    at(vcpu, CODE + 1)?; // nop
    at(vcpu, CODE + 2)?; // pushfq
    at(vcpu, CODE + 3)?; // pop rax
    let tf_visible = vcpu.regs().rax & 0x100 != 0;
    let (_, after_ud) = step(vcpu)?; // ud2 -> #UD
    let exception_merges = after_ud == UD_HANDLER + 1;
    if !exception_merges {
        at(vcpu, UD_HANDLER + 1)?;
    }
    at(vcpu, UD_HANDLER + 6)?; // add [rsp], 2
    let (_, after_iret) = step(vcpu)?; // iretq
    let iret_merges = after_iret == CODE + 6;
    if !iret_merges {
        at(vcpu, CODE + 6)?;
    }
    at(vcpu, CODE + 7)?; // nop
    at(vcpu, CODE + 8)?; // sti
    at(vcpu, CODE + 9)?; // nop (STI shadow)
    let (hlt_debug_exit, after_hlt) = step(vcpu)?; // hlt, natively
    let hlt_halts = !(hlt_debug_exit && after_hlt == CODE + 10);
    if !vcpu.interrupt_window_open() {
        return Err("stepping probe: interrupt window closed after HLT".into());
    }
    vcpu.inject_interrupt(IRQ_VECTOR).map_err(|e| e.to_string())?;
    let (_, after_irq) = step(vcpu)?;
    let irq_merges = after_irq == IRQ_HANDLER + 1;
    Ok(format!(
        "ttvm-step/{PROBE_VERSION} exception-merges-handler={} irq-merges-handler={} iretq-merges-next={} tf-visible={} hlt-halts={}{RING3_FIELD}{}",
        yes(exception_merges),
        yes(irq_merges),
        yes(iret_merges),
        yes(tf_visible),
        yes(hlt_halts),
        ring3::probe()?
    ))
}

/// Whether this host's data breakpoints fire in native runs (measured once per process,
/// `free_watch.rs`): a `mov rax, [DATA]` run natively with a data breakpoint on `DATA`
/// beside an instruction breakpoint must end in a debug exit right after the load that
/// names the data breakpoint in DR6. On the PVM hosts of docs/PERFORMANCE.md they do not
/// fire at all, and free runs hide the watched pages instead (`free_watch.rs`).
pub fn data_breakpoints_fire() -> bool {
    static FIRE: OnceLock<bool> = OnceLock::new();
    *FIRE.get_or_init(|| probe_data_breakpoints().unwrap_or(false))
}

fn probe_data_breakpoints() -> Result<bool, String> {
    const DATA: u64 = 0x5000;
    // mov rax, [DATA] (48 8b 04 25 imm32); nop; hlt
    let program: &[(u64, &[u8])] = &[(CODE, &[0x48, 0x8b, 0x04, 0x25, 0x00, 0x50, 0x00, 0x00, 0x90, 0xf4])];
    let mut vm = probe_machine(program)?;
    let vcpu = vm.vcpu_mut();
    vcpu.set_debug(false, [Some(CODE + 9), None, None, None]).map_err(|e| e.to_string())?;
    let data = ttvm_vmm::x86::data_breakpoints::DataBreakpoint { addr: DATA, len: 8 };
    vcpu.set_data_breakpoints([None, Some(data), None, None]).map_err(|e| e.to_string())?;
    let fired = match vcpu.run().map_err(|e| e.to_string())? {
        VcpuExit::Debug(arch) => arch.dr6 & 0b10 != 0,
        _ => false,
    };
    Ok(fired && vcpu.rip() == CODE + 8)
}

/// This host's single-step signature (measured once per process). When the probe cannot
/// run (no KVM), the error text is returned so callers fail with it when they try KVM.
pub fn host_signature() -> String {
    static SIGNATURE: OnceLock<String> = OnceLock::new();
    SIGNATURE.get_or_init(|| probe().unwrap_or_else(|e| format!("unknown ({e})"))).clone()
}

/// Measures the signature without caching (tests).
pub fn measure() -> Result<String, String> {
    probe()
}

#[cfg(test)]
mod tests {
    use super::*;

    const OLD: &str =
        "ttvm-step/1 exception-merges-handler=yes irq-merges-handler=yes iretq-merges-next=yes tf-visible=no hlt-halts=no";

    #[test]
    fn signatures_without_ring3_replay_on_hosts_that_measure_it() {
        assert!(compatible(OLD, REFERENCE_SIGNATURE), "old traces never stepped ring 3");
        assert!(compatible(REFERENCE_SIGNATURE, REFERENCE_SIGNATURE));
        assert!(
            compatible(REFERENCE_SIGNATURE, OLD),
            "a host that cannot step ring 3 replays up to the first user step, refused there"
        );
        let kvm = REFERENCE_SIGNATURE.replace("ring3=db-trap", "ring3=kvm");
        assert!(compatible(REFERENCE_SIGNATURE, &kvm), "refused only when replay reaches user mode");
        assert!(!compatible(&OLD.replace("hlt-halts=no", "hlt-halts=yes"), REFERENCE_SIGNATURE));
    }

    #[test]
    fn the_ring3_field_picks_the_method() {
        assert_eq!(ring3_steps(REFERENCE_SIGNATURE), Ring3Steps::DebugTrap);
        assert_eq!(ring3_steps(&REFERENCE_SIGNATURE.replace("db-trap", "kvm")), Ring3Steps::KvmExits);
        assert_eq!(ring3_steps(&REFERENCE_SIGNATURE.replace("db-trap", "none")), Ring3Steps::Refused);
        assert_eq!(ring3_steps(OLD), Ring3Steps::Refused);
    }
}

#[cfg(test)]
mod data_breakpoint_probe {
    /// The probe runs (or says no without KVM); what it finds depends on the host and is
    /// printed for the record.
    #[test]
    fn the_data_breakpoint_probe_answers() {
        let fire = super::probe_data_breakpoints();
        eprintln!("data breakpoints fire in native runs on this host: {fire:?}");
        assert_eq!(super::data_breakpoints_fire(), fire.unwrap_or(false));
    }
}

#[cfg(test)]
mod unfinished_exits {
    use kvm_ioctls::VcpuExit;

    /// An I/O read that nobody finished (a replay gave up at it) must not land on the state
    /// restored after it: KVM would write its data into the restored RAX at the next entry.
    #[test]
    fn a_restore_drops_an_unfinished_port_read() {
        if !ttvm_test_support::require_kvm("a_restore_drops_an_unfinished_port_read") {
            return;
        }
        // mov dx, 0x80; in al, dx; hlt
        let code: &[u8] = &[0x66, 0xba, 0x80, 0x00, 0xec, 0xf4];
        let mut vm = super::probe_machine(&[(super::CODE, code)]).unwrap_or_else(|e| panic!("test VM: {e}"));
        let vcpu = vm.vcpu_mut();
        let start = vcpu.save_state().unwrap();
        match vcpu.run().unwrap() {
            VcpuExit::IoIn(0x80, data) => data[0] = 0x5a,
            other => panic!("expected the port read, got {other:?}"),
        }
        vcpu.restore_state(&start).unwrap();
        vcpu.set_single_step(true).unwrap();
        assert!(matches!(vcpu.run().unwrap(), VcpuExit::Debug(_)));
        let regs = vcpu.regs();
        assert_eq!(regs.rip, super::CODE + 4, "one step from the restored start: the MOV");
        assert_eq!(regs.rax & 0xff, 0, "the unfinished read's 0x5a reached the restored RAX");
    }
}
