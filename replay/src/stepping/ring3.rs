//! How this host single-steps ring 3, measured with a second tiny guest that starts in user
//! mode (a user page with `nop; nop; ud2`, a #DB and a #UD handler, a TSS).
//!
//! - `kvm`: a single-step exits after the first user instruction, in ring 3, as in ring 0.
//! - `db-trap`: user code runs natively past KVM's single-step (the PVM hosts), but with TF
//!   set in the guest's RFLAGS the #DB reaches the guest's ring-0 handler, where a hardware
//!   breakpoint exits before the handler runs, with the frame of the trap; and a fault
//!   raised with TF set is delivered with TF hidden in its frame. The engine steps ring 3
//!   this way (`engine/user_steps.rs`).
//! - `none`: neither; recordings stop before user mode.

use kvm_bindings::{kvm_regs, kvm_segment, kvm_sregs};
use kvm_ioctls::VcpuExit;
use ttvm_vmm::boot::linux::flat_segment;
use ttvm_vmm::memory::{GuestRam, MIN_RAM};
use ttvm_vmm::vcpu::Vcpu;
use ttvm_vmm::vm::Vm;

const DB_HANDLER: u64 = 0x1100;
const UD_HANDLER: u64 = 0x1200;
const IDT: u64 = 0x2000;
const GDT: u64 = 0x3000;
const TSS: u64 = 0x3100;
const PML4: u64 = 0x4000;
const KERNEL_STACK: u64 = 0x9000;
const USER: u64 = 0x20_0000;
const USER_STACK: u64 = 0x21_0000;
const TF: u64 = 1 << 8;

fn gate(handler: u64) -> [u8; 16] {
    let mut g = [0u8; 16];
    g[0..2].copy_from_slice(&(handler as u16).to_le_bytes());
    g[2..4].copy_from_slice(&0x10u16.to_le_bytes());
    g[5] = 0x8e;
    g[6..8].copy_from_slice(&((handler >> 16) as u16).to_le_bytes());
    g
}

fn build(ram: &mut GuestRam) -> Result<(), String> {
    let w = |ram: &mut GuestRam, a: u64, b: &[u8]| ram.write(a, b).map_err(|e| e.to_string());
    w(ram, DB_HANDLER, &[0x90, 0x48, 0xcf])?; // nop; iretq
    w(ram, UD_HANDLER, &[0x90, 0xeb, 0xfe])?; // nop; jmp $
    w(ram, USER, &[0x90, 0x90, 0x0f, 0x0b])?; // nop; nop; ud2
    w(ram, IDT + 16, &gate(DB_HANDLER))?;
    w(ram, IDT + 6 * 16, &gate(UD_HANDLER))?;
    // Linux's selectors: kernel CS 0x10, SS 0x18, user SS 0x2b, CS 0x33, TSS 0x38.
    let tss = 0x67 | (TSS & 0xff_ffff) << 16 | 0x89 << 40;
    let gdt = [
        0,
        0,
        0x00af_9a00_0000_ffff,
        0x00cf_9200_0000_ffff,
        0,
        0x00cf_f200_0000_ffff,
        0x00af_fa00_0000_ffff,
        tss,
        0u64,
    ];
    for (i, d) in gdt.iter().enumerate() {
        w(ram, GDT + 8 * i as u64, &d.to_le_bytes())?;
    }
    w(ram, TSS + 4, &KERNEL_STACK.to_le_bytes())?;
    // 0-2 MiB supervisor-only, 2-4 MiB user.
    w(ram, PML4, &(PML4 + 0x1000 + 7).to_le_bytes())?;
    w(ram, PML4 + 0x1000, &(PML4 + 0x2000 + 7).to_le_bytes())?;
    w(ram, PML4 + 0x2000, &0x83u64.to_le_bytes())?;
    w(ram, PML4 + 0x2008, &(USER | 0x87).to_le_bytes())
}

fn user_state(sregs: &mut kvm_sregs) {
    sregs.cs = kvm_segment { dpl: 3, ..flat_segment(0x33, 0xb, 1, 0) };
    let data = flat_segment(0x18, 0x3, 0, 1);
    (sregs.ds, sregs.es, sregs.fs, sregs.gs) = (data, data, data, data);
    sregs.ss = kvm_segment { dpl: 3, ..flat_segment(0x2b, 0x3, 0, 1) };
    sregs.tr = kvm_segment { selector: 0x38, base: TSS, limit: 0x67, type_: 0xb, present: 1, ..Default::default() };
    sregs.gdt.base = GDT;
    sregs.gdt.limit = 71;
    sregs.idt.base = IDT;
    sregs.idt.limit = 0xfff;
    sregs.cr0 = 0x8000_0011;
    sregs.cr3 = PML4;
    sregs.cr4 = 0x20;
    sregs.efer = 0x500;
}

/// Starts user code at `rip` with `rflags` and runs to the next exit: (RIP, CPL, debug exit?).
fn run_from(vcpu: &mut Vcpu, sregs: &kvm_sregs, rip: u64, rflags: u64) -> Result<(u64, u8, bool), String> {
    let regs = kvm_regs { rip, rsp: USER_STACK, rflags, ..Default::default() };
    vcpu.init_registers(&regs, sregs).map_err(|e| e.to_string())?;
    let debug = matches!(vcpu.run().map_err(|e| e.to_string())?, VcpuExit::Debug(_));
    Ok((vcpu.rip(), vcpu.sregs().cs.dpl, debug))
}

fn frame_word(ram: &GuestRam, index: u64) -> Result<u64, String> {
    let mut b = [0u8; 8];
    ram.read(KERNEL_STACK - 40 + 8 * index, &mut b).map_err(|e| e.to_string())?;
    Ok(u64::from_le_bytes(b))
}

/// `kvm`, `db-trap` or `none` (see the module comment).
pub(super) fn probe() -> Result<&'static str, String> {
    let mut vm = Vm::new(MIN_RAM, ttvm_vmm::cpuid::CpuVendor::Host).map_err(|e| e.to_string())?;
    build(vm.ram_mut())?;
    let mut sregs = vm.vcpu().sregs();
    user_state(&mut sregs);
    let (ram, vcpu) = vm.split_mut();
    vcpu.set_single_step(true).map_err(|e| e.to_string())?;
    let (rip, cpl, debug) = run_from(vcpu, &sregs, USER, 0x202)?;
    if debug && cpl == 3 && rip == USER + 1 {
        return Ok("kvm");
    }
    vcpu.set_hw_breakpoints([Some(DB_HANDLER), None, None, None]).map_err(|e| e.to_string())?;
    let (rip, cpl, debug) = run_from(vcpu, &sregs, USER, 0x202 | TF)?;
    let trapped = debug && cpl == 0 && rip == DB_HANDLER;
    if !trapped || frame_word(ram, 0)? != USER + 1 || frame_word(ram, 2)? & TF == 0 {
        return Ok("none");
    }
    let (rip, cpl, _) = run_from(vcpu, &sregs, USER + 2, 0x202 | TF)?;
    if cpl != 0 || rip != UD_HANDLER + 1 || frame_word(ram, 0)? != USER + 2 || frame_word(ram, 2)? & TF != 0 {
        return Ok("none");
    }
    Ok("db-trap")
}
