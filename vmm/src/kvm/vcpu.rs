//! The single vCPU: register access through KVM's shared run page (KVM_CAP_SYNC_REGS), guest
//! debug (single-step, hardware breakpoints), interrupt injection and full state save/restore.

use std::os::fd::AsRawFd;

use kvm_bindings::{
    kvm_guest_debug, kvm_regs, kvm_sregs, kvm_vcpu_events, kvm_xsave, CpuId, Msrs, KVM_GUESTDBG_ENABLE,
    KVM_GUESTDBG_SINGLESTEP, KVM_GUESTDBG_USE_HW_BP, KVM_SYNC_X86_REGS, KVM_SYNC_X86_SREGS,
};
use kvm_ioctls::{VcpuExit, VcpuFd, VmFd};

mod debugregs_state;
mod events_state;
mod mp_state;
mod regs_state;
mod sregs_state;
mod state;
mod xcrs_state;

pub use debugregs_state::DebugRegsState;
pub use events_state::{ExceptionEventState, InterruptEventState, NmiEventState, SmiEventState, VcpuEventsState};
pub use mp_state::MpState;
pub use regs_state::RegsState;
pub use sregs_state::{DtableState, SegmentState, SregsState};
pub use state::{VcpuState, XSAVE_WORDS};
pub use xcrs_state::{XcrState, XcrsState};

use crate::msr::STATE_MSRS;
use crate::persist::StateError;
use crate::shown_fpu::ShownFpuFields;
use crate::x86::data_breakpoints::DataBreakpoint;

/// Errors from vCPU ioctls, and saved states refused before they reach KVM.
#[derive(Debug, thiserror::Error)]
pub enum VcpuError {
    /// An ioctl failed; `op` names it.
    #[error("vCPU {op} failed: {source}")]
    Ioctl {
        /// The operation that failed.
        op: &'static str,
        /// The errno KVM returned.
        source: kvm_ioctls::Error,
    },
    /// A saved vCPU state that no vCPU could be in.
    #[error("saved vCPU state refused: {0}")]
    InvalidState(#[from] StateError),
}

fn err(op: &'static str) -> impl FnOnce(kvm_ioctls::Error) -> VcpuError {
    move |source| VcpuError::Ioctl { op, source }
}

/// A failure building an ioctl argument (an MSR list KVM cannot take), as an EINVAL.
fn invalid_argument(op: &'static str) -> VcpuError {
    VcpuError::Ioctl { op, source: kvm_ioctls::Error::new(libc::EINVAL) }
}

/// What the debug-exit of a guest step reported.
#[derive(Clone, Copy, Debug, Default)]
pub struct DebugExitInfo {
    /// DR6 at the exit.
    pub dr6: u64,
    /// DR7 at the exit.
    pub dr7: u64,
    /// Exception vector (1 = #DB, 3 = #BP).
    pub exception: u32,
    /// Guest RIP at the exit.
    pub pc: u64,
}

/// The vCPU.
#[derive(Debug)]
pub struct Vcpu {
    fd: VcpuFd,
    msr_indices: Vec<u32>,
    single_step: bool,
    hw_breakpoints: [Option<u64>; 4],
    /// Data breakpoints, in the debug registers `hw_breakpoints` leaves free.
    data_breakpoints: [Option<DataBreakpoint>; 4],
    /// The host's FPU fields every XSAVE region read from KVM carries ([`crate::shown_fpu`]).
    shown_fpu: ShownFpuFields,
    /// The last exit was an I/O or MMIO access, which KVM finishes (a read's data into the
    /// registers, RIP past the instruction) only at the next KVM_RUN ([`Vcpu::finish_exit`]).
    exit_unfinished: bool,
}

impl Vcpu {
    /// Creates vCPU 0 of `vm` with the given CPUID table. `supported_msrs` is KVM's MSR index
    /// list, used to pick which of the state MSRs can be saved.
    pub fn new(vm: &VmFd, cpuid: &CpuId, supported_msrs: &[u32]) -> Result<Self, VcpuError> {
        let fd = vm.create_vcpu(0).map_err(err("KVM_CREATE_VCPU"))?;
        fd.set_cpuid2(cpuid).map_err(err("KVM_SET_CPUID2"))?;
        let msr_indices = STATE_MSRS.iter().copied().filter(|m| supported_msrs.contains(m)).collect();
        let mut vcpu = Self {
            fd,
            msr_indices,
            single_step: false,
            hw_breakpoints: [None; 4],
            data_breakpoints: [None; 4],
            shown_fpu: ShownFpuFields::CANONICAL,
            exit_unfinished: false,
        };
        // Prime the shared register area so `regs()`/`sregs()` are valid before the first run.
        let regs = vcpu.fd.get_regs().map_err(err("KVM_GET_REGS"))?;
        let sregs = vcpu.fd.get_sregs().map_err(err("KVM_GET_SREGS"))?;
        let run = vcpu.fd.get_kvm_run();
        run.kvm_valid_regs = u64::from(KVM_SYNC_X86_REGS | KVM_SYNC_X86_SREGS);
        let sync = vcpu.fd.sync_regs_mut();
        sync.regs = regs;
        sync.sregs = sregs;
        Ok(vcpu)
    }

    /// Enters the guest until the next exit. Registers are synced into the shared page.
    pub fn run(&mut self) -> Result<VcpuExit<'_>, kvm_ioctls::Error> {
        self.fd.get_kvm_run().kvm_valid_regs = u64::from(KVM_SYNC_X86_REGS | KVM_SYNC_X86_SREGS);
        let exit = self.fd.run();
        self.exit_unfinished = matches!(
            exit,
            Ok(VcpuExit::IoIn(..) | VcpuExit::IoOut(..) | VcpuExit::MmioRead(..) | VcpuExit::MmioWrite(..))
        );
        exit
    }

    /// Lets KVM finish an I/O or MMIO exit nobody answered (the caller gave up on it: a
    /// divergence, a free run that ends there) without running the guest, so it cannot
    /// land on state restored after it: the next KVM_RUN would otherwise write the read's
    /// data into the restored RAX and move the restored RIP. Done by every
    /// [`Vcpu::restore_state`], and by replay's RAM restore before it writes RAM (the
    /// completion of an emulated instruction may write guest memory).
    pub fn finish_exit(&mut self) {
        // KVM completes the access, then returns EINTR without entering the guest; an
        // instruction with a second access (a read-modify-write of MMIO) exits once more
        // first. The state is replaced next anyway, whatever the data.
        for _ in 0..4 {
            if !self.exit_unfinished {
                return;
            }
            self.fd.set_kvm_immediate_exit(1);
            let _ = self.run();
            self.fd.set_kvm_immediate_exit(0);
        }
        self.exit_unfinished = false;
    }

    /// The raw kvm_run page (interrupt-window fields, immediate_exit).
    pub fn kvm_run(&mut self) -> &mut kvm_bindings::kvm_run {
        self.fd.get_kvm_run()
    }

    /// General registers as of the last exit (or last `set_regs`).
    pub fn regs(&self) -> kvm_regs {
        self.fd.sync_regs().regs
    }

    /// Changes general registers; applied on the next entry.
    pub fn set_regs(&mut self, regs: &kvm_regs) {
        self.fd.sync_regs_mut().regs = *regs;
        self.fd.set_sync_dirty_reg(kvm_ioctls::SyncReg::Register);
    }

    /// Guest RIP.
    pub fn rip(&self) -> u64 {
        self.fd.sync_regs().regs.rip
    }

    /// System registers as of the last exit (or last `set_sregs`), without
    /// `interrupt_bitmap` (see [`without_stale_interrupts`]).
    pub fn sregs(&self) -> kvm_sregs {
        without_stale_interrupts(self.fd.sync_regs().sregs)
    }

    /// Changes system registers; applied on the next entry. Never re-queues an interrupt
    /// (see [`without_stale_interrupts`]).
    pub fn set_sregs(&mut self, sregs: &kvm_sregs) {
        self.fd.sync_regs_mut().sregs = without_stale_interrupts(*sregs);
        self.fd.set_sync_dirty_reg(kvm_ioctls::SyncReg::SystemRegister);
    }

    /// Pushes pending register changes to KVM now, so ioctls that read state see them.
    fn flush_dirty_regs(&mut self) -> Result<(), VcpuError> {
        let dirty = self.fd.get_kvm_run().kvm_dirty_regs;
        if dirty & u64::from(KVM_SYNC_X86_REGS) != 0 {
            let regs = self.fd.sync_regs().regs;
            self.fd.set_regs(&regs).map_err(err("KVM_SET_REGS"))?;
        }
        if dirty & u64::from(KVM_SYNC_X86_SREGS) != 0 {
            let sregs = self.fd.sync_regs().sregs;
            self.fd.set_sregs(&sregs).map_err(err("KVM_SET_SREGS"))?;
        }
        self.fd.get_kvm_run().kvm_dirty_regs = 0;
        Ok(())
    }

    fn apply_guest_debug(&mut self) -> Result<(), VcpuError> {
        let mut dbg = kvm_guest_debug::default();
        let mut dr7 = 0u64;
        for (i, (bp, data)) in self.hw_breakpoints.iter().zip(&self.data_breakpoints).enumerate() {
            if let Some(addr) = bp {
                dbg.arch.debugreg[i] = *addr;
                dr7 |= 1 << (i * 2 + 1); // global enable, execute, length 1
            } else if let Some(d) = data {
                dbg.arch.debugreg[i] = d.addr;
                dr7 |= d.dr7_bits(i);
            }
        }
        dbg.arch.debugreg[7] = dr7 | 0x400;
        if self.single_step || dr7 != 0 {
            dbg.control = KVM_GUESTDBG_ENABLE;
            if self.single_step {
                dbg.control |= KVM_GUESTDBG_SINGLESTEP;
            }
            if dr7 != 0 {
                dbg.control |= KVM_GUESTDBG_USE_HW_BP;
            }
        }
        self.fd.set_guest_debug(&dbg).map_err(err("KVM_SET_GUEST_DEBUG"))
    }

    /// Turns KVM single-stepping on or off: with it on, every entry runs one guest step and
    /// exits with `VcpuExit::Debug`.
    pub fn set_single_step(&mut self, on: bool) -> Result<(), VcpuError> {
        if self.single_step != on {
            self.single_step = on;
            self.apply_guest_debug()?;
        }
        Ok(())
    }

    /// Whether single-step is on.
    pub fn single_step(&self) -> bool {
        self.single_step
    }

    /// Sets single-step and the hardware breakpoints together, with one KVM_SET_GUEST_DEBUG
    /// (stepping over a breakpoint switches both, twice per hit).
    pub fn set_debug(&mut self, single_step: bool, bps: [Option<u64>; 4]) -> Result<(), VcpuError> {
        if self.single_step != single_step || self.hw_breakpoints != bps {
            self.single_step = single_step;
            self.hw_breakpoints = bps;
            self.apply_guest_debug()?;
        }
        Ok(())
    }

    /// Sets the host-owned hardware instruction breakpoints (invisible to the guest).
    pub fn set_hw_breakpoints(&mut self, bps: [Option<u64>; 4]) -> Result<(), VcpuError> {
        if self.hw_breakpoints != bps {
            self.hw_breakpoints = bps;
            self.apply_guest_debug()?;
        }
        Ok(())
    }

    /// Sets the host-owned data breakpoints (invisible to the guest); a slot that also holds
    /// an instruction breakpoint ([`Vcpu::set_debug`]) serves that one. Which fired shows in
    /// the debug exit's DR6 (bits 0-3).
    pub fn set_data_breakpoints(&mut self, data: [Option<DataBreakpoint>; 4]) -> Result<(), VcpuError> {
        if self.data_breakpoints != data {
            self.data_breakpoints = data;
            self.apply_guest_debug()?;
        }
        Ok(())
    }

    /// Queues external interrupt `vector` for delivery at the next entry (KVM_INTERRUPT).
    /// Only valid when [`Vcpu::interrupt_window_open`] is true.
    pub fn inject_interrupt(&self, vector: u8) -> Result<(), VcpuError> {
        #[repr(C)]
        struct KvmInterrupt {
            irq: u32,
        }
        const KVM_INTERRUPT: libc::c_ulong = 0x4004_ae86; // _IOW(KVMIO, 0x86, struct kvm_interrupt)
        let arg = KvmInterrupt { irq: u32::from(vector) };
        // SAFETY: KVM_INTERRUPT reads one `struct kvm_interrupt` (a u32) from the pointer,
        // which points at a live, correctly sized value; the fd is our vCPU fd.
        let ret = unsafe { libc::ioctl(self.fd.as_raw_fd(), KVM_INTERRUPT as _, &arg) };
        if ret < 0 {
            return Err(VcpuError::Ioctl { op: "KVM_INTERRUPT", source: kvm_ioctls::Error::last() });
        }
        Ok(())
    }

    /// Queues hardware exception `vector`, without an error code, for delivery at the next
    /// entry (KVM_SET_VCPU_EVENTS). The return address the guest sees is the current RIP.
    pub fn inject_exception(&self, vector: u8) -> Result<(), VcpuError> {
        self.queue_exception(vector, None)
    }

    /// Queues hardware exception `vector` with `error_code` (#GP, #PF and the like), for
    /// delivery at the next entry; RIP stays at the faulting instruction.
    pub fn inject_exception_with_error_code(&self, vector: u8, error_code: u32) -> Result<(), VcpuError> {
        self.queue_exception(vector, Some(error_code))
    }

    fn queue_exception(&self, vector: u8, error_code: Option<u32>) -> Result<(), VcpuError> {
        let mut ev = self.vcpu_events()?;
        ev.exception.injected = 1;
        ev.exception.nr = vector;
        ev.exception.has_error_code = u8::from(error_code.is_some());
        ev.exception.error_code = error_code.unwrap_or(0);
        // Only the always-written fields (exception, interrupt, NMI injected/masked) change.
        ev.flags = 0;
        self.set_vcpu_events(&ev)
    }

    /// Whether the guest can take an external interrupt right now (IF set, no interrupt
    /// shadow, nothing already queued), as reported by KVM at the last exit.
    pub fn interrupt_window_open(&mut self) -> bool {
        let run = self.fd.get_kvm_run();
        run.ready_for_interrupt_injection != 0 && run.if_flag != 0
    }

    /// Asks KVM to exit as soon as the guest can take an interrupt.
    pub fn request_interrupt_window(&mut self, on: bool) {
        self.fd.get_kvm_run().request_interrupt_window = u8::from(on);
    }

    /// Captures the complete vCPU state.
    pub fn save_state(&mut self) -> Result<VcpuState, VcpuError> {
        self.flush_dirty_regs()?;
        let mut msrs = Msrs::from_entries(
            &self
                .msr_indices
                .iter()
                .map(|&index| kvm_bindings::kvm_msr_entry { index, ..Default::default() })
                .collect::<Vec<_>>(),
        )
        .map_err(|_| invalid_argument("building the MSR list"))?;
        let n = self.fd.get_msrs(&mut msrs).map_err(err("KVM_GET_MSRS"))?;
        Ok(VcpuState {
            regs: (&self.fd.get_regs().map_err(err("KVM_GET_REGS"))?).into(),
            sregs: (&self.fd.get_sregs().map_err(err("KVM_GET_SREGS"))?).into(),
            xsave: self.get_xsave()?.region.to_vec(),
            xcrs: (&self.fd.get_xcrs().map_err(err("KVM_GET_XCRS"))?).into(),
            debugregs: (&self.fd.get_debug_regs().map_err(err("KVM_GET_DEBUGREGS"))?).into(),
            events: (&self.fd.get_vcpu_events().map_err(err("KVM_GET_VCPU_EVENTS"))?).into(),
            mp_state: (&self.fd.get_mp_state().map_err(err("KVM_GET_MP_STATE"))?).into(),
            msrs: msrs.as_slice()[..n].iter().map(|e| (e.index, e.data)).collect(),
        })
    }

    /// Restores a state captured by [`Vcpu::save_state`], once [`VcpuState::validate`] has
    /// accepted it.
    pub fn restore_state(&mut self, s: &VcpuState) -> Result<(), VcpuError> {
        s.validate()?;
        self.finish_exit();
        // KVM ignores these fields; the vCPU goes on showing the saved ones.
        self.shown_fpu = ShownFpuFields::of(&s.xsave);
        let regs = kvm_regs::from(&s.regs);
        let sregs = kvm_sregs::from(&s.sregs);
        // Order follows KVM's requirements: sregs (mode) before regs and MSRs, events last.
        self.fd.get_kvm_run().kvm_dirty_regs = 0;
        self.fd.set_mp_state((&s.mp_state).into()).map_err(err("KVM_SET_MP_STATE"))?;
        self.fd.set_sregs(&sregs).map_err(err("KVM_SET_SREGS"))?;
        self.fd.set_regs(&regs).map_err(err("KVM_SET_REGS"))?;
        let mut xsave = kvm_xsave::default();
        xsave.region.copy_from_slice(&s.xsave);
        // SAFETY: `xsave` is a complete 4 KiB kvm_xsave; KVM_SET_XSAVE reads exactly that
        // (no extra area: the CPUID model offers no dynamic XSAVE features).
        unsafe { self.fd.set_xsave(&xsave) }.map_err(err("KVM_SET_XSAVE"))?;
        self.fd.set_xcrs(&(&s.xcrs).into()).map_err(err("KVM_SET_XCRS"))?;
        self.fd.set_debug_regs(&(&s.debugregs).into()).map_err(err("KVM_SET_DEBUGREGS"))?;
        let entries: Vec<_> = s
            .msrs
            .iter()
            .map(|&(index, data)| kvm_bindings::kvm_msr_entry { index, data, ..Default::default() })
            .collect();
        let msrs = Msrs::from_entries(&entries).map_err(|_| invalid_argument("building the MSR list"))?;
        self.fd.set_msrs(&msrs).map_err(err("KVM_SET_MSRS"))?;
        self.fd.set_vcpu_events(&(&s.events).into()).map_err(err("KVM_SET_VCPU_EVENTS"))?;
        let sync = self.fd.sync_regs_mut();
        sync.regs = regs;
        sync.sregs = sregs;
        Ok(())
    }

    /// Sets initial registers through ioctls (before the first run).
    pub fn init_registers(&mut self, regs: &kvm_regs, sregs: &kvm_sregs) -> Result<(), VcpuError> {
        self.fd.get_kvm_run().kvm_dirty_regs = 0;
        self.fd.set_sregs(sregs).map_err(err("KVM_SET_SREGS"))?;
        self.fd.set_regs(regs).map_err(err("KVM_SET_REGS"))?;
        let sync = self.fd.sync_regs_mut();
        sync.regs = *regs;
        sync.sregs = *sregs;
        Ok(())
    }

    /// Writes one MSR through KVM.
    pub fn set_msr(&self, index: u32, data: u64) -> Result<(), VcpuError> {
        let msrs = Msrs::from_entries(&[kvm_bindings::kvm_msr_entry { index, data, ..Default::default() }])
            .map_err(|_| invalid_argument("building the MSR list"))?;
        match self.fd.set_msrs(&msrs).map_err(err("KVM_SET_MSRS"))? {
            1 => Ok(()),
            _ => Err(invalid_argument("KVM_SET_MSRS")),
        }
    }

    /// Reads one MSR through KVM.
    pub fn get_msr(&self, index: u32) -> Result<u64, VcpuError> {
        let mut msrs = Msrs::from_entries(&[kvm_bindings::kvm_msr_entry { index, ..Default::default() }])
            .map_err(|_| invalid_argument("building the MSR list"))?;
        let n = self.fd.get_msrs(&mut msrs).map_err(err("KVM_GET_MSRS"))?;
        if n != 1 {
            return Err(invalid_argument("KVM_GET_MSRS"));
        }
        Ok(msrs.as_slice()[0].data)
    }

    /// The x87/SSE state: the 4 KiB `kvm_xsave` region as 32-bit words (its first 512
    /// bytes are the FXSAVE image). Reading it does not change the vCPU.
    pub fn xsave(&self) -> Result<Vec<u32>, VcpuError> {
        Ok(self.get_xsave()?.region.to_vec())
    }

    /// The host's FPU fields this vCPU shows ([`crate::shown_fpu`]).
    pub fn shown_fpu_fields(&self) -> ShownFpuFields {
        self.shown_fpu
    }

    /// The MXCSR_MASK the host CPU reports (what an FXSAVE run by the CPU stores).
    pub fn host_mxcsr_mask(&self) -> Result<u32, VcpuError> {
        Ok(ShownFpuFields::of(&self.fd.get_xsave().map_err(err("KVM_GET_XSAVE"))?.region).mxcsr_mask)
    }

    /// KVM's XSAVE region with the fields this vCPU shows in place of the host's: every read
    /// of the x87/SSE state goes through here.
    fn get_xsave(&self) -> Result<kvm_xsave, VcpuError> {
        let mut xsave = self.fd.get_xsave().map_err(err("KVM_GET_XSAVE"))?;
        self.shown_fpu.show_in(&mut xsave.region);
        Ok(xsave)
    }

    /// Changes the vCPU's x87/SSE state through its FXSAVE image (the first 512 bytes of
    /// the XSAVE area) and marks x87 and SSE state as present, without which KVM ignores
    /// the image. KVM_GET/SET_FPU are not used: on PVM hosts KVM_GET_FPU reports MXCSR as 0
    /// and KVM_SET_FPU does not change it.
    pub fn update_fxsave(&self, change: impl FnOnce(&mut [u8; 512])) -> Result<(), VcpuError> {
        const FXSAVE_WORDS: usize = crate::fxsave::LEN / 4;
        // XSTATE_BV (XSAVE header, byte 512).
        const XSTATE_BV_WORD: usize = crate::fxsave::LEN / 4;
        const XFEATURE_FP_SSE: u32 = 0b11;
        let mut xsave = self.get_xsave()?;
        let mut image = crate::fxsave::image_of(&xsave.region);
        change(&mut image);
        for (word, bytes) in xsave.region[..FXSAVE_WORDS].iter_mut().zip(image.chunks_exact(4)) {
            *word = u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
        }
        xsave.region[XSTATE_BV_WORD] |= XFEATURE_FP_SSE;
        // SAFETY: `xsave` is the complete 4 KiB kvm_xsave KVM just returned; KVM_SET_XSAVE
        // reads exactly that (no extra area: the CPUID model offers no dynamic features).
        unsafe { self.fd.set_xsave(&xsave) }.map_err(err("KVM_SET_XSAVE"))
    }

    /// The FXSAVE image (the first 512 bytes of the XSAVE area).
    pub fn fxsave_image(&self) -> Result<[u8; 512], VcpuError> {
        Ok(crate::fxsave::image_of(&self.get_xsave()?.region))
    }

    /// The guest's debug registers (KVM_GET_DEBUGREGS).
    pub fn debug_regs(&self) -> Result<kvm_bindings::kvm_debugregs, VcpuError> {
        self.fd.get_debug_regs().map_err(err("KVM_GET_DEBUGREGS"))
    }

    /// Sets the guest's debug registers (KVM_SET_DEBUGREGS).
    pub fn set_debug_regs(&self, regs: &kvm_bindings::kvm_debugregs) -> Result<(), VcpuError> {
        self.fd.set_debug_regs(regs).map_err(err("KVM_SET_DEBUGREGS"))
    }

    /// Pending events and interrupt shadow (KVM_GET_VCPU_EVENTS).
    pub fn vcpu_events(&self) -> Result<kvm_vcpu_events, VcpuError> {
        self.fd.get_vcpu_events().map_err(err("KVM_GET_VCPU_EVENTS"))
    }

    /// Sets pending events and interrupt shadow (KVM_SET_VCPU_EVENTS).
    pub fn set_vcpu_events(&self, events: &kvm_vcpu_events) -> Result<(), VcpuError> {
        self.fd.set_vcpu_events(events).map_err(err("KVM_SET_VCPU_EVENTS"))
    }

    /// Sets the `immediate_exit` flag so a pending KVM_RUN returns with EINTR.
    pub fn set_immediate_exit(&mut self, on: bool) {
        self.fd.set_kvm_immediate_exit(u8::from(on));
    }
}

/// `sregs` with an empty `interrupt_bitmap`.
///
/// The bitmap names an interrupt KVM has queued but not yet delivered, and KVM_SET_SREGS
/// queues the lowest vector set in it. KVM fills the shared sync-regs copy on every exit
/// without clearing it first, so there the bitmap keeps a bit for every vector that was
/// ever pending at some exit: writing that copy back (completing a SYSCALL, emulating an
/// instruction) delivered a long-handled timer interrupt again, with IF clear. Measured
/// on Linux: vectors 0x30 and 0x34 stuck in the bitmap, a timer interrupt at
/// entry_SYSCALL_64 on the user stack, a double fault. A real queued interrupt stays
/// queued without the bitmap (KVM only adds, never drops, on KVM_SET_SREGS), and
/// snapshots carry it in `kvm_vcpu_events`.
fn without_stale_interrupts(mut sregs: kvm_sregs) -> kvm_sregs {
    sregs.interrupt_bitmap = [0; 4];
    sregs
}

impl crate::error_kind::Classify for VcpuError {
    fn kind(&self) -> crate::error_kind::ErrorKind {
        match self {
            Self::Ioctl { .. } => crate::error_kind::ErrorKind::KvmInternal,
            Self::InvalidState(e) => crate::error_kind::Classify::kind(e),
        }
    }
}
