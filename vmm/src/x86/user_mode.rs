//! Guest ring 3 on hosts whose KVM emulates guest ring 0 (PVM): where the exact engine must
//! stop (before an IRETQ or SYSRET into user mode), and SYSCALL from user mode, which the
//! host leaves half done and the free engine completes.
//!
//! Entering user mode: ring-3 code runs natively and cannot be single-stepped here, and the
//! host runs IRETQ together with the instructions after it, so a step that IRETQs to ring 3
//! would run user code up to its next trap as part of that one step, without icount,
//! without logging its RDTSCs and not interruptible at a recorded point. The exact engine
//! therefore stops before such an instruction ([`user_mode_entry`]).
//!
//! SYSCALL: measured with the `ring3` sample kernel: such a host carries out most of a user-mode
//! SYSCALL (RCX = return RIP, R11 = RFLAGS, RFLAGS masked by SFMASK, RIP = LSTAR) but leaves
//! the CPU in ring 3 with the user CS and SS. The fetch at LSTAR, a supervisor page, then
//! faults: the guest takes a #PF (error code user + fetch, CR2 = RIP = LSTAR) whose frame
//! holds CS 0x33. Linux kills init with SIGSEGV on its first system call.
//!
//! Nothing in ring 3 exits to ttvm here (hardware breakpoints and single-step are not
//! honoured there), but the #PF is delivered to ring 0, which KVM emulates and where a
//! hardware breakpoint does exit. So ttvm keeps a breakpoint on the guest's #PF handler
//! (IDT vector 14) and, when the fault is exactly that failed SYSCALL, finishes it as the
//! CPU would have: the frame the delivery pushed is dropped (RSP back to the user RSP,
//! RFLAGS as SYSCALL left them), CS and SS come from STAR, RIP is LSTAR. Every other page
//! fault single-steps the handler's first instruction with the breakpoint off (RFLAGS.RF
//! does not keep it from firing again here), so each guest page fault costs two extra
//! exits. Left different from hardware: CR2 holds LSTAR afterwards, and the
//! 48 bytes of the dropped frame stay written below the entry stack's top.
//!
//! The exact engine completes the SYSCALL in the same way when it steps ring 3
//! (`replay/src/engine/user_steps.rs`), and restores CR2 and the dropped frame's bytes
//! there, so a recorded SYSCALL leaves exactly what the CPU's would.

use kvm_bindings::{kvm_regs, kvm_segment, kvm_sregs};

use crate::memory::GuestRam;
use crate::paging::AddressSpace;
use crate::vcpu::VcpuError;
use crate::vm::Vm;

const PF_VECTOR: u64 = 14;
const IRET: u8 = 0xcf;
const SYSRET_0: u8 = 0x0f;
const SYSRET_1: u8 = 0x07;
/// Page-fault error code bits: the access came from user mode, and was an instruction fetch.
const PF_USER: u64 = 1 << 2;
const PF_FETCH: u64 = 1 << 4;
const RFLAGS_RF: u64 = 1 << 16;
const EFER_SCE: u64 = 1;
/// The hardware breakpoint slot ttvm uses (the free engine uses no other).
const SLOT: usize = 3;

/// What a debug exit at the #PF handler turned out to be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PageFaultTrap {
    /// It was a user-mode SYSCALL that the host left in ring 3; it now enters the kernel.
    SyscallCompleted,
    /// An ordinary page fault: the handler runs as usual (after a single step past the
    /// breakpoint).
    OrdinaryFault,
    /// That single step is done.
    SteppedOver,
    /// The exit was not at the #PF handler.
    NotOurs,
}

/// The exception frame the CPU pushes for a fault with an error code, lowest address first.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FaultFrame {
    /// The error code.
    pub error_code: u64,
    /// The faulting RIP.
    pub rip: u64,
    /// CS at the fault.
    pub cs: u64,
    /// RFLAGS at the fault.
    pub rflags: u64,
    /// RSP at the fault.
    pub rsp: u64,
}

impl FaultFrame {
    /// The frame from its 40 bytes.
    pub fn parse(bytes: &[u8; 40]) -> Self {
        let word = |i| le_word(bytes, 8, i);
        Self { error_code: word(0), rip: word(1), cs: word(2), rflags: word(3), rsp: word(4) }
    }

    /// Whether this fault is the fetch at LSTAR, in ring 3, that a SYSCALL left behind.
    pub fn is_stranded_syscall(&self, cr2: u64, lstar: u64) -> bool {
        self.cs & 3 == 3
            && self.error_code & (PF_USER | PF_FETCH) == PF_USER | PF_FETCH
            && self.rip == lstar
            && cr2 == lstar
    }
}

/// Word `index` of a stack frame of `width`-byte little-endian words.
fn le_word(bytes: &[u8], width: usize, index: usize) -> u64 {
    let mut w = [0u8; 8];
    w[..width].copy_from_slice(&bytes[index * width..(index + 1) * width]);
    u64::from_le_bytes(w)
}

/// The 64-bit code segment SYSCALL loads: selector STAR[47:32] with RPL 0, flat.
fn syscall_cs(star: u64) -> kvm_segment {
    kvm_segment {
        base: 0,
        limit: 0xffff_ffff,
        selector: ((star >> 32) & 0xfffc) as u16,
        type_: 0xb, // execute/read, accessed
        present: 1,
        dpl: 0,
        db: 0,
        s: 1,
        l: 1,
        g: 1,
        ..Default::default()
    }
}

/// The stack segment SYSCALL loads: the selector after its CS, flat read/write data.
fn syscall_ss(star: u64) -> kvm_segment {
    kvm_segment {
        base: 0,
        limit: 0xffff_ffff,
        selector: (((star >> 32) & 0xfffc) + 8) as u16,
        type_: 0x3, // read/write, accessed
        present: 1,
        dpl: 0,
        db: 1,
        s: 1,
        l: 0,
        g: 1,
        ..Default::default()
    }
}

/// Finishes the SYSCALL the host left in ring 3, given the state at the #PF handler.
pub fn complete_syscall(regs: &mut kvm_regs, sregs: &mut kvm_sregs, frame: &FaultFrame, star: u64, lstar: u64) {
    regs.rip = lstar;
    regs.rsp = frame.rsp;
    regs.rflags = frame.rflags & !RFLAGS_RF;
    sregs.cs = syscall_cs(star);
    sregs.ss = syscall_ss(star);
}

/// If `code`, the instruction at RIP, returns from ring 0 to ring 3 (IRETQ or IRETD with a
/// user CS in its frame, or SYSRET), the user-mode RIP it goes to. The exact engine stops
/// there instead of stepping it (see the module comment).
pub fn user_mode_entry(code: &[u8], regs: &kvm_regs, sregs: &kvm_sregs, ram: &GuestRam) -> Option<u64> {
    if sregs.cs.dpl != 0 {
        return None;
    }
    let (rex_w, rest) = match code.first() {
        Some(&b) if b & 0xf0 == 0x40 => (b & 0x08 != 0, &code[1..]),
        _ => (false, code),
    };
    match rest {
        [SYSRET_0, SYSRET_1, ..] => Some(if rex_w { regs.rcx } else { regs.rcx & 0xffff_ffff }),
        [IRET, ..] => {
            let width = if rex_w { 8 } else { 4 };
            let mut frame = [0u8; 16];
            AddressSpace::from_sregs(sregs).read_virt(ram, regs.rsp, &mut frame[..2 * width]).ok()?;
            (le_word(&frame, width, 1) & 3 == 3).then_some(le_word(&frame, width, 0))
        }
        _ => None,
    }
}

/// The free engine's state for the #PF-handler breakpoint.
#[derive(Debug, Default)]
pub struct SyscallTrap {
    /// An ordinary fault's handler is being single-stepped past the breakpoint, which on
    /// these hosts fires again on resume, RFLAGS.RF notwithstanding.
    stepping_over: bool,
}

impl SyscallTrap {
    /// Not in the middle of a step over the handler: the vCPU's state is the guest's own.
    pub fn is_idle(&self) -> bool {
        !self.stepping_over
    }

    /// Before each entry: the breakpoint on the guest's current #PF handler, or single-step
    /// without it while stepping over (no ioctl unless something changed). Until the guest
    /// enables SYSCALL (EFER.SCE) there is nothing to catch, and no breakpoint: an armed one
    /// costs a few per cent of emulation speed even where it never fires (`bench` kernel).
    pub fn before_run(&mut self, vm: &mut Vm) -> Result<(), VcpuError> {
        let mut bps = [None; 4];
        if !self.stepping_over {
            bps[SLOT] = vm.stranded_syscall_trap(&vm.vcpu().sregs());
        }
        let vcpu = vm.vcpu_mut();
        vcpu.set_hw_breakpoints(bps)?;
        vcpu.set_single_step(self.stepping_over)
    }

    /// Handles a debug exit: the end of a step over the handler's first instruction, or the
    /// breakpoint at the #PF handler, where it either completes a stranded user-mode
    /// SYSCALL or lets the ordinary fault's handler run.
    pub fn on_debug_exit(&mut self, vm: &mut Vm) -> Result<PageFaultTrap, VcpuError> {
        if self.stepping_over {
            self.stepping_over = false;
            return Ok(PageFaultTrap::SteppedOver);
        }
        let (mut regs, mut sregs) = (vm.vcpu().regs(), vm.vcpu().sregs());
        if sregs.cs.dpl != 0 || Some(regs.rip) != vm.page_fault_handler(&sregs) {
            return Ok(PageFaultTrap::NotOurs);
        }
        let mut bytes = [0u8; 40];
        let read = AddressSpace::from_sregs(&sregs).read_virt(vm.ram(), regs.rsp, &mut bytes);
        let frame = FaultFrame::parse(&bytes);
        // Cheap checks first: LSTAR and STAR cost an ioctl each.
        if read.is_ok() && frame.cs & 3 == 3 && frame.rip == sregs.cr2 {
            let lstar = vm.vcpu().get_msr(crate::msr::LSTAR)?;
            if frame.is_stranded_syscall(sregs.cr2, lstar) {
                let star = vm.vcpu().get_msr(crate::msr::STAR)?;
                complete_syscall(&mut regs, &mut sregs, &frame, star, lstar);
                vm.vcpu_mut().set_regs(&regs);
                vm.vcpu_mut().set_sregs(&sregs);
                return Ok(PageFaultTrap::SyscallCompleted);
            }
        }
        self.stepping_over = true;
        Ok(PageFaultTrap::OrdinaryFault)
    }
}

/// What a stranded SYSCALL's fault overwrote: CR2, and the bytes below the #PF delivery
/// stack's top where the CPU pushed its frame (error code, RIP, CS, RFLAGS, RSP, SS).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BeforeSyscall {
    /// CR2 before the fault.
    pub cr2: u64,
    /// Where the fault's frame goes: the #PF gate's stack top less [`FAULT_FRAME_BYTES`].
    pub frame_at: u64,
    /// The bytes there before the fault.
    pub bytes: [u8; FAULT_FRAME_BYTES],
}

/// Bytes of a #PF frame from ring 3: the error code and five words.
pub const FAULT_FRAME_BYTES: usize = 48;

impl Vm {
    /// Where a hardware breakpoint catches stranded SYSCALLs: the guest's #PF handler, once
    /// the guest has enabled SYSCALL (EFER.SCE; before that there is nothing to catch, and
    /// an armed breakpoint costs a few per cent of emulation speed even where it never fires).
    pub fn stranded_syscall_trap(&self, sregs: &kvm_sregs) -> Option<u64> {
        (sregs.efer & EFER_SCE != 0).then(|| self.page_fault_handler(sregs)).flatten()
    }

    /// What a user-mode SYSCALL's stranded fault would overwrite, read now (`None` if the
    /// IDT, TSS or that stack is not mapped).
    pub fn before_syscall(&self, sregs: &kvm_sregs) -> Option<BeforeSyscall> {
        let gate = crate::descriptors::idt_gate(self.ram(), sregs, PF_VECTOR as u8)?;
        let frame_at =
            crate::descriptors::delivery_stack_top(self.ram(), sregs, gate)?.wrapping_sub(FAULT_FRAME_BYTES as u64);
        let mut bytes = [0u8; FAULT_FRAME_BYTES];
        AddressSpace::from_sregs(sregs).read_virt(self.ram(), frame_at, &mut bytes).ok()?;
        Some(BeforeSyscall { cr2: sregs.cr2, frame_at, bytes })
    }

    /// At the guest's #PF handler: if the fault is a stranded SYSCALL whose frame is at
    /// `before.frame_at`, completes the SYSCALL ([`complete_syscall`]) and puts back CR2 and
    /// the bytes the frame overwrote, so it leaves exactly what the CPU's SYSCALL would
    /// (true). False, changing nothing, for any other fault.
    pub fn finish_stranded_syscall(&mut self, before: &BeforeSyscall) -> Result<bool, VcpuError> {
        let (mut regs, mut sregs) = (self.vcpu().regs(), self.vcpu().sregs());
        let mut bytes = [0u8; 40];
        let space = AddressSpace::from_sregs(&sregs);
        if sregs.cs.dpl != 0
            || regs.rsp != before.frame_at
            || space.read_virt(self.ram(), regs.rsp, &mut bytes).is_err()
        {
            return Ok(false);
        }
        let frame = FaultFrame::parse(&bytes);
        let lstar = self.vcpu().get_msr(crate::msr::LSTAR)?;
        if !frame.is_stranded_syscall(sregs.cr2, lstar) {
            return Ok(false);
        }
        let star = self.vcpu().get_msr(crate::msr::STAR)?;
        complete_syscall(&mut regs, &mut sregs, &frame, star, lstar);
        sregs.cr2 = before.cr2;
        self.write_guest_virt(&sregs, before.frame_at, &before.bytes);
        self.vcpu_mut().set_regs(&regs);
        self.vcpu_mut().set_sregs(&sregs);
        Ok(true)
    }

    /// The guest's #PF handler address from its IDT (IDTR and paging from `sregs`), if the
    /// IDT covers vector 14 and is mapped. Read from guest memory, so it follows the guest's
    /// own IDT changes.
    pub fn page_fault_handler(&self, sregs: &kvm_sregs) -> Option<u64> {
        crate::descriptors::idt_gate(self.ram(), sregs, PF_VECTOR as u8).map(|g| g.handler)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LSTAR: u64 = 0xffff_ffff_81c0_0000;
    const LINUX_STAR: u64 = 0x0023_0010_0000_0000;

    fn frame(cs: u64, error_code: u64, rip: u64) -> FaultFrame {
        FaultFrame { error_code, rip, cs, rflags: 0x1_0002, rsp: 0x7ffc_3d87_b308 }
    }

    #[test]
    fn the_fault_run_9_showed_is_a_stranded_syscall() {
        // init's first open(): RIP 0033:entry_SYSCALL_64, error code 0x15, CR2 = RIP.
        assert!(frame(0x33, 0x15, LSTAR).is_stranded_syscall(LSTAR, LSTAR));
    }

    #[test]
    fn other_faults_are_left_to_the_guest() {
        assert!(!frame(0x10, 0x11, LSTAR).is_stranded_syscall(LSTAR, LSTAR), "kernel-mode fetch");
        assert!(!frame(0x33, 0x06, LSTAR).is_stranded_syscall(LSTAR, LSTAR), "user write, not a fetch");
        assert!(!frame(0x33, 0x14, 0x40_1000).is_stranded_syscall(0x40_1000, LSTAR), "user fetch elsewhere");
        assert!(!frame(0x33, 0x15, LSTAR).is_stranded_syscall(0x1234, LSTAR), "CR2 from another fault");
    }

    #[test]
    fn completion_enters_the_kernel_as_syscall_would() {
        let mut regs = kvm_regs { rip: 0xffff_ffff_8100_1000, rsp: 0xffff_fe00_0000_1fd8, ..Default::default() };
        let mut sregs = kvm_sregs::default();
        completion(&mut regs, &mut sregs);
        assert_eq!(regs.rip, LSTAR);
        assert_eq!(regs.rsp, 0x7ffc_3d87_b308, "the user stack, as SYSCALL leaves it");
        assert_eq!(regs.rflags, 0x2, "RF from the fault frame is dropped");
        assert_eq!((sregs.cs.selector, sregs.cs.dpl, sregs.cs.l), (0x10, 0, 1));
        assert_eq!((sregs.ss.selector, sregs.ss.dpl, sregs.ss.type_), (0x18, 0, 3));
    }

    fn completion(regs: &mut kvm_regs, sregs: &mut kvm_sregs) {
        complete_syscall(regs, sregs, &frame(0x33, 0x15, LSTAR), LINUX_STAR, LSTAR);
    }

    /// Flat physical addressing (paging off) with `frame` at RSP 0x1000.
    fn at_iret(frame: &[u64]) -> (kvm_regs, kvm_sregs, GuestRam) {
        let mut ram = GuestRam::new(crate::memory::MIN_RAM).unwrap();
        for (i, w) in frame.iter().enumerate() {
            ram.write(0x1000 + 8 * i as u64, &w.to_le_bytes()).unwrap();
        }
        let regs = kvm_regs { rsp: 0x1000, rcx: 0x40_1018, ..Default::default() };
        (regs, kvm_sregs::default(), ram)
    }

    #[test]
    fn returns_to_ring_3_are_found_before_they_run() {
        let (regs, sregs, ram) = at_iret(&[0x40_0000, 0x33, 0x202, 0x7ffc_0000, 0x2b]);
        assert_eq!(user_mode_entry(&[0x48, 0xcf], &regs, &sregs, &ram), Some(0x40_0000), "IRETQ");
        assert_eq!(user_mode_entry(&[0x48, 0x0f, 0x07], &regs, &sregs, &ram), Some(0x40_1018), "SYSRETQ");
        // IRETD pops 4-byte words: EIP 0x400000, CS 0 (the high half of the 8-byte RIP slot).
        assert_eq!(user_mode_entry(&[0xcf], &regs, &sregs, &ram), None, "IRETD to CS 0");
        let (regs32, _, ram32) = at_iret(&[0x23_0040_0000]);
        assert_eq!(user_mode_entry(&[0xcf], &regs32, &sregs, &ram32), Some(0x40_0000), "IRETD to CS 0x23");
    }

    #[test]
    fn returns_within_the_kernel_and_other_instructions_are_not() {
        let (regs, mut sregs, ram) = at_iret(&[0xffff_ffff_8100_0000, 0x10, 0x2, 0xffff_c900_0000_0000, 0x18]);
        assert_eq!(user_mode_entry(&[0x48, 0xcf], &regs, &sregs, &ram), None, "IRETQ to ring 0");
        assert_eq!(user_mode_entry(&[0x0f, 0x05], &regs, &sregs, &ram), None, "SYSCALL");
        assert_eq!(user_mode_entry(&[], &regs, &sregs, &ram), None, "nothing fetched");
        sregs.cs.dpl = 3;
        assert_eq!(user_mode_entry(&[0x48, 0x0f, 0x07], &regs, &sregs, &ram), None, "already in ring 3");
    }

    #[test]
    fn frames_parse_lowest_address_first() {
        let mut bytes = [0u8; 40];
        for (i, v) in [0x15u64, LSTAR, 0x33, 0x1_0002, 0x7ffc_0000].iter().enumerate() {
            bytes[i * 8..i * 8 + 8].copy_from_slice(&v.to_le_bytes());
        }
        assert_eq!(
            FaultFrame::parse(&bytes),
            FaultFrame { error_code: 0x15, rip: LSTAR, cs: 0x33, rflags: 0x1_0002, rsp: 0x7ffc_0000 }
        );
    }
}
