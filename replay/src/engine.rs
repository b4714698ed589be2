//! The exact step engine: KVM single-step, one guest step per KVM_RUN, icount = steps since
//! reset. Before each step it looks at the instruction at RIP and itself emulates the ones
//! whose result does not follow from guest state (see [`ttvm_vmm::insn`]); everything that
//! enters or leaves the guest goes through a [`StepEnv`], which is the recorder (devices +
//! log writer) or the replayer (log reader + checker).
//!
//! Step semantics on the reference hosts (pinned by tests): one exit per instruction; an
//! exception or injected interrupt is delivered and the handler's first instruction runs in
//! the same step; IRETQ and the next instruction run in one step; HLT is emulated here.
//! Ring 3 does not single-step there; `user_steps` makes each user instruction a step
//! through the guest's #DB instead.

use kvm_bindings::{kvm_regs, kvm_sregs};
use kvm_ioctls::VcpuExit;
use ttvm_vmm::devices::Board;
use ttvm_vmm::machine::Machine;
use ttvm_vmm::msr;

use crate::divergence::Divergence;
use crate::events::StopKind;
use ttvm_vmm::insn::{
    apply_emulated, classify, classify_merging, code_mode, fetch_at_rip, CodeMode, Merging, Special, MAX_INSN_LEN,
};
use ttvm_vmm::shown_fpu::fxsave_mask_address;
use ttvm_vmm::undefined_flags::{undefined_flags, UndefinedFlags};
use ttvm_vmm::user_mode::user_mode_entry;

mod injected_frame;
mod user_steps;

pub(crate) const RFLAGS_IF: u64 = 1 << 9;
/// CR4.TSD: RDTSC is privileged.
const CR4_TSD: u64 = 1 << 2;

/// Instructions whose value comes from the environment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Emulated {
    /// RDTSC.
    Rdtsc,
    /// RDTSCP.
    Rdtscp,
    /// RDRAND.
    Rdrand,
    /// RDSEED.
    Rdseed,
    /// RDMSR of IA32_TSC.
    RdmsrTsc,
}

/// What HLT does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HaltOutcome {
    /// Time was advanced; the guest continues after the HLT (an interrupt will be due).
    Continue,
    /// Nothing can ever wake the guest.
    Stop(StopKind),
}

/// Errors that stop the engine (not guest behaviour).
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// Replay no longer matches the recording.
    #[error("{0}")]
    Divergence(Box<Divergence>),
    /// The guest entered user mode, which these hosts cannot single-step.
    #[error(
        "the guest entered user mode (ring 3) at icount {icount}, RIP {rip:#x}: this host's KVM \
         cannot single-step ring-3 code (see DESIGN.md), so recording stops here"
    )]
    UserMode {
        /// Step count.
        icount: u64,
        /// RIP.
        rip: u64,
    },
    /// Ring 3 in a form the engine does not step (see `engine/user_steps.rs`).
    #[error("the guest entered user mode at icount {icount}, RIP {rip:#x}, in a way ttvm cannot record: {why}")]
    UserModeUnsupported {
        /// Step count.
        icount: u64,
        /// RIP of the instruction.
        rip: u64,
        /// What is not supported.
        why: &'static str,
    },
    /// Replay reached user mode in a trace recorded with another ring-3 method.
    #[error(
        "the trace steps user mode (ring 3) from icount {icount}, RIP {rip:#x}, the way its \
         recording host did (the `ring3=` field of its stepping signature, `ttvm info`); this host \
         steps ring 3 another way, so replay stops here"
    )]
    UserModeOnOtherHost {
        /// Step count.
        icount: u64,
        /// RIP.
        rip: u64,
    },
    /// KVM_RUN or another vCPU ioctl failed.
    #[error("KVM failed at icount {icount}: {message}")]
    Kvm {
        /// Step count.
        icount: u64,
        /// Description.
        message: String,
    },
    /// Writing the trace failed.
    #[error("writing the trace failed: {0}")]
    Io(#[from] std::io::Error),
    /// The recording's disk could not give the guest what it asked for (the image could not
    /// be read, or a branch's disk does not hold the sector): what the guest would get is
    /// not known, so the recording stops here.
    #[error("the disk failed at icount {icount}: {source}")]
    Disk {
        /// The step whose disk completion failed.
        icount: u64,
        /// Why.
        source: ttvm_vmm::disk::DiskError,
    },
    /// The user interrupted (Ctrl-C).
    #[error("interrupted")]
    Interrupted,
}

/// Where guest I/O and nondeterministic values come from and go to.
pub trait StepEnv {
    /// Start of step `icount`, before interrupts: device work that writes guest RAM (the
    /// disk's completions). Recording does what is due and logs it; replay does what the
    /// log says happened here.
    fn devices_at_boundary(&mut self, machine: &mut Machine, icount: u64) -> Result<(), EngineError> {
        let _ = (machine, icount);
        Ok(())
    }
    /// Start of step `icount`: returns the vector of an external interrupt to inject now.
    /// `window_open` says whether the guest can take one.
    fn at_boundary(&mut self, board: &mut Board, icount: u64, window_open: bool) -> Result<Option<u8>, EngineError>;
    /// `in`: fill `data`.
    fn port_in(
        &mut self,
        board: &mut Board,
        icount: u64,
        port: u16,
        data: &mut [u8],
        rip: u64,
    ) -> Result<(), EngineError>;
    /// `out`: returns a stop if the guest asked to exit.
    fn port_out(
        &mut self,
        board: &mut Board,
        icount: u64,
        port: u16,
        data: &[u8],
        rip: u64,
    ) -> Result<Option<StopKind>, EngineError>;
    /// MMIO read: fill `data`.
    fn mmio_read(
        &mut self,
        board: &mut Board,
        icount: u64,
        addr: u64,
        data: &mut [u8],
        rip: u64,
    ) -> Result<(), EngineError>;
    /// MMIO write.
    fn mmio_write(
        &mut self,
        board: &mut Board,
        icount: u64,
        addr: u64,
        data: &[u8],
        rip: u64,
    ) -> Result<(), EngineError>;
    /// The value of an emulated instruction.
    fn emulated_value(&mut self, board: &mut Board, icount: u64, what: Emulated) -> Result<u64, EngineError>;
    /// HLT with interrupts enabled at CPL 0.
    fn halt(&mut self, board: &mut Board, icount: u64, interrupts_enabled: bool) -> Result<HaltOutcome, EngineError>;
    /// The guest stopped on its own in step `icount` (triple fault, KVM error).
    fn guest_stop(&mut self, board: &mut Board, icount: u64, stop: &StopKind) -> Result<(), EngineError>;
}

/// The engine's position; checkpoints save it as a [`crate::persist::SavedEngineState`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EngineState {
    /// Steps executed since reset.
    pub icount: u64,
    /// Whether the guest could take an interrupt at this boundary.
    pub window_open: bool,
}

/// Result of one step.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StepOutcome {
    /// The step ran; the guest goes on.
    Continue,
    /// The guest stopped during this step (the step still counts).
    Stopped(StopKind),
}

/// The engine, owning the machine.
#[derive(Debug)]
pub struct Engine {
    /// The machine being stepped.
    pub machine: Machine,
    state: EngineState,
    single_step_on: bool,
    /// How steps are taken: fixed by the trace format being recorded or replayed.
    pub rules: StepRules,
    /// The guest's debug registers while ring 3 is stepped through its #DB (DR6 is put
    /// back after every step); dropped at every ring-0 step and restore.
    user_debugregs: Option<kvm_bindings::kvm_debugregs>,
    /// DR6 as the last step's debug exit reported it (which host breakpoint fired).
    last_exit_dr6: u64,
    /// Whether the last step was an instruction the engine emulated from its model or the
    /// log (RDTSC, RDRAND, CPUID, HLT…), or a return to ring 3 it carried out: a native run
    /// must not execute such a step itself (it is an anchor, `trace::AnchorLandmark`). A
    /// return to ring 3 could run natively, but a native run must see the machine as the
    /// kernel leaves it there: its last writes to the #PF stack are what a stranded SYSCALL
    /// in the user code after it has to put back (`free_syscalls.rs`).
    last_step_emulated: bool,
    /// The last step delivered an injected interrupt (and ran the handler's first
    /// instruction) instead of the instruction at RIP.
    last_step_injected: bool,
    /// Whether the last step was a ring-0 IRETQ the engine carried out.
    last_step_iretq: bool,
    /// The arithmetic flags the last step's instruction leaves undefined (decoded, whatever
    /// this CPU left there; 0: none): a native run would leave the host's values where the
    /// engine clears them, so the recorder has a replay single-step it when it is near an
    /// anchor (`landmark.rs`).
    last_step_undefined_flags: u64,
}

/// How the engine steps ring-3 code: the host's stepping signature decides
/// ([`crate::stepping`]), and a trace replays with what it was recorded with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ring3Steps {
    /// Recording stops before user mode (traces whose signature does not say how ring 3 is
    /// stepped: they never stepped it).
    Refused,
    /// Single-step exits in ring 3 as in ring 0 (hosts whose KVM steps ring 3 itself).
    KvmExits,
    /// Ring 3 runs natively and the guest takes the #DB (PVM hosts): the engine sets TF for
    /// each user instruction and catches the #DB at the guest's handler with a hardware
    /// breakpoint, dropping the frame (`engine/user_steps.rs`).
    DebugTrap,
    /// Replay of a trace whose user-mode steps were taken with another method than this
    /// host has: everything up to the first user-mode step replays (the methods differ
    /// only there), which is then refused as an incompatible host.
    OtherHost,
}

/// The rules of a step that a trace format fixes: a trace replays with the rules it was
/// recorded with, so each rule that changes icounts or guest-visible state is a format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StepRules {
    /// Every step is kept to one instruction where the host's single-step would run two:
    /// the engine carries out ring-0 IRETQs and the [`Merging`] instructions itself, and
    /// ends the step after an instruction it emulated for KVM (format 2 on). Format 1 was
    /// recorded with the host's merges.
    pub strict_steps: bool,
    /// The arithmetic flags an instruction leaves undefined are cleared after it (format 3
    /// on), so the trace does not depend on what the recording CPU happened to write there
    /// ([`ttvm_vmm::undefined_flags`]).
    pub canonical_flags: bool,
    /// A ring-0 IRETQ whose RFLAGS image has TF set is carried out by the engine with TF
    /// clear (format 7 on). Such a TF is the host's single-step: KVM steps with TF set in
    /// the guest's RFLAGS, so an interrupt taken during a step pushes it. Left to the CPU,
    /// the IRETQ sets TF again, and how many instructions run before the trap is reported
    /// depends on KVM state no checkpoint holds (measured: one or two after a restore), so
    /// a replay from a checkpoint could take a different number of steps than the
    /// recording. Ring-0 code that sets TF itself (kgdb) is not stepped by the engine.
    pub iretq_drops_stepping_tf: bool,
    /// A ring-0 FXSAVE is a step of its own, an anchor, and stores the MXCSR_MASK the vCPU
    /// shows (format 8 on; [`ttvm_vmm::shown_fpu`]). Before, the host's single-step ran the
    /// next instruction in the same step.
    pub fxsave_alone: bool,
    /// How ring 3 is stepped.
    pub ring3: Ring3Steps,
}

impl StepRules {
    /// The rules of trace format `version`, without ring 3 (see [`StepRules::for_trace`]).
    pub fn for_format(version: u32) -> Self {
        Self {
            strict_steps: version >= crate::trace::STRICT_STEPS_SINCE,
            canonical_flags: version >= crate::trace::CANONICAL_FLAGS_SINCE,
            iretq_drops_stepping_tf: version >= crate::trace::IRETQ_DROPS_TF_SINCE,
            fxsave_alone: version >= crate::trace::FXSAVE_ALONE_SINCE,
            ring3: Ring3Steps::Refused,
        }
    }

    /// The rules of a trace of format `version` recorded with stepping signature
    /// `stepping`: the signature says how ring 3 was stepped, if it was.
    pub fn for_trace(version: u32, stepping: &str) -> Self {
        Self { ring3: crate::stepping::ring3_steps(stepping), ..Self::for_format(version) }
    }

    /// The rules to replay a trace recorded with `stepping` on a host with signature `host`:
    /// the trace's, except that user-mode steps taken with another ring-3 method than this
    /// host's are refused when replay reaches them ([`Ring3Steps::OtherHost`]).
    pub fn for_replay(version: u32, stepping: &str, host: &str) -> Self {
        let rules = Self::for_trace(version, stepping);
        match rules.ring3 {
            Ring3Steps::Refused => rules,
            mine if mine == crate::stepping::ring3_steps(host) => rules,
            _ => Self { ring3: Ring3Steps::OtherHost, ..rules },
        }
    }

    /// The rules new recordings use on this host.
    pub fn current() -> Self {
        Self::for_trace(crate::trace::FORMAT_VERSION, &crate::stepping::host_signature())
    }
}

/// What IRETQ loads from the RFLAGS image (64-bit mode: everything architectural but VM).
const IRET_RFLAGS: u64 = 0x3d_7fd5;
/// RFLAGS bit 1 always reads as 1.
const RFLAGS_FIXED: u64 = 1 << 1;
pub(crate) const RFLAGS_TF: u64 = 1 << 8;
const RFLAGS_NT: u64 = 1 << 14;
/// IRET's opcode (IRETQ with REX.W).
const IRET: u8 = 0xcf;

/// Whether `addr` is a canonical 48-bit virtual address.
fn is_canonical(addr: u64) -> bool {
    let top = addr >> 47;
    top == 0 || top == 0x1_ffff
}

impl Engine {
    /// Wraps a machine at reset (icount 0).
    pub fn new(machine: Machine) -> Self {
        Self {
            machine,
            state: EngineState {
                icount: 0,
                // At reset PVH entry state has IF clear; the first exit corrects this.
                window_open: false,
            },
            single_step_on: false,
            rules: StepRules::for_format(crate::trace::FORMAT_VERSION),
            user_debugregs: None,
            last_exit_dr6: 0,
            last_step_emulated: false,
            last_step_injected: false,
            last_step_iretq: false,
            last_step_undefined_flags: 0,
        }
    }

    /// Whether the last step was an instruction the engine emulated itself (see the field).
    pub fn last_step_emulated(&self) -> bool {
        self.last_step_emulated
    }

    /// Whether the last step delivered an injected interrupt instead of running the
    /// instruction at RIP (see the field).
    pub fn last_step_injected(&self) -> bool {
        self.last_step_injected
    }

    /// Whether the last step was a ring-0 IRETQ: the instruction it returned to may not
    /// raise an instruction breakpoint when the same IRETQ runs natively (the image's RF,
    /// which the CPU sets in the frame of a fault so the restarted instruction does not
    /// trap again), so it is no landmark (`landmark.rs`).
    pub fn last_step_iretq(&self) -> bool {
        self.last_step_iretq
    }

    /// The arithmetic flags the last step's instruction leaves undefined (see the field).
    pub fn last_step_undefined_flags(&self) -> u64 {
        self.last_step_undefined_flags
    }

    /// Steps executed since reset.
    pub fn icount(&self) -> u64 {
        self.state.icount
    }

    /// State for a checkpoint.
    pub fn state(&self) -> EngineState {
        self.state
    }

    /// Restores state from a checkpoint (with the vCPU and RAM restored separately).
    pub fn set_state(&mut self, state: EngineState) {
        self.state = state;
        self.user_debugregs = None;
    }

    fn kvm_err(&self, e: impl std::fmt::Display) -> EngineError {
        EngineError::Kvm { icount: self.state.icount, message: e.to_string() }
    }

    /// Reads the instruction bytes at RIP (fewer if the tail is unmapped).
    pub fn fetch_instruction(&self, regs: &kvm_regs, sregs: &kvm_sregs) -> ([u8; MAX_INSN_LEN], usize) {
        fetch_at_rip(self.machine.vm.ram(), regs, sregs)
    }

    /// Whether a step into or in ring 3 at `rip` may be taken under these rules.
    fn check_ring3_allowed(&self, icount: u64, rip: u64) -> Result<(), EngineError> {
        match self.rules.ring3 {
            Ring3Steps::Refused => Err(EngineError::UserMode { icount, rip }),
            Ring3Steps::OtherHost => Err(EngineError::UserModeOnOtherHost { icount, rip }),
            Ring3Steps::KvmExits | Ring3Steps::DebugTrap => Ok(()),
        }
    }

    /// Executes one guest step.
    pub fn step<E: StepEnv>(&mut self, env: &mut E) -> Result<StepOutcome, EngineError> {
        if !self.single_step_on {
            self.machine.vm.vcpu_mut().set_single_step(true).map_err(|e| self.kvm_err(e))?;
            self.single_step_on = true;
        }
        let icount = self.state.icount;
        self.last_step_emulated = false;
        self.last_step_injected = false;
        self.last_step_iretq = false;
        self.last_step_undefined_flags = 0;
        let sregs = self.machine.vm.vcpu().sregs();
        let regs = self.machine.vm.vcpu().regs();
        let user = sregs.cs.dpl == 3;
        if user {
            self.check_ring3_allowed(icount, regs.rip)?;
        }
        env.devices_at_boundary(&mut self.machine, icount)?;
        if !user {
            // Breakpoints only serve ring-3 steps (set there, and left armed between them:
            // each change is an ioctl). In ring 0 they would stop the guest's own handlers.
            self.user_debugregs = None;
            self.machine.vm.vcpu_mut().set_hw_breakpoints([None; 4]).map_err(|e| self.kvm_err(e))?;
        }
        let inject = env.at_boundary(&mut self.machine.board, icount, self.state.window_open)?;
        if let Some(vector) = inject {
            self.machine.vm.vcpu().inject_interrupt(vector).map_err(|e| self.kvm_err(e))?;
            self.last_step_injected = true;
        } else {
            let (bytes, n) = self.fetch_instruction(&regs, &sregs);
            if let Some(user_rip) = user_mode_entry(&bytes[..n], &regs, &sregs, self.machine.vm.ram()) {
                self.check_ring3_allowed(icount, user_rip)?;
                return self.return_to_user(&bytes[..n], regs, &sregs);
            }
            if let Some(outcome) = self.try_emulate(env, regs, &sregs, &bytes[..n])? {
                return Ok(outcome);
            }
            let fxsave = fxsave_mask_address(&bytes[..n], &regs, &sregs);
            if user && self.rules.ring3 == Ring3Steps::DebugTrap {
                let outcome = self.step_user(env, regs, &sregs, &bytes[..n])?;
                if self.rules.canonical_flags {
                    if let Some(undefined) = undefined_flags(&bytes[..n], code_mode(&sregs), regs.rcx) {
                        self.last_step_undefined_flags = undefined.mask;
                        self.canonicalise_flags(regs.rip, undefined);
                    }
                }
                self.show_mxcsr_mask_in_user_mode(regs.rip, &sregs, fxsave)?;
                return Ok(outcome);
            }
            if self.rules.strict_steps {
                if self.try_emulate_iretq(&bytes[..n], regs, &sregs)? {
                    self.last_step_iretq = true;
                    return Ok(StepOutcome::Continue);
                }
                if let Some(outcome) = self.try_emulate_merging(env, &bytes[..n], regs, &sregs)? {
                    return Ok(outcome);
                }
            }
            if self.rules.canonical_flags {
                if let Some(undefined) = undefined_flags(&bytes[..n], code_mode(&sregs), regs.rcx) {
                    self.last_step_undefined_flags = undefined.mask;
                    let outcome = self.run_one_step(env)?;
                    self.canonicalise_flags(regs.rip, undefined);
                    return Ok(outcome);
                }
            }
            if let Some((mask_at, len)) = fxsave.filter(|_| !user) {
                return self.step_fxsave(env, &regs, &sregs, mask_at, len);
            }
        }
        let outcome = self.run_one_step(env)?;
        if let Some(vector) = inject.filter(|_| self.rules.iretq_drops_stepping_tf && !user) {
            self.clear_stepping_tf_in_frame(vector, &regs, &sregs);
        }
        Ok(outcome)
    }

    /// Clears the flags the instruction just stepped left undefined, if the step ended right
    /// after it (it did not fault: then the handler's first instruction ran instead).
    fn canonicalise_flags(&mut self, rip_before: u64, undefined: UndefinedFlags) {
        let vcpu = self.machine.vm.vcpu_mut();
        let mut regs = vcpu.regs();
        if regs.rip == rip_before.wrapping_add(undefined.len as u64) && regs.rflags & undefined.mask != 0 {
            regs.rflags &= !undefined.mask;
            vcpu.set_regs(&regs);
        }
    }

    /// After a user-mode step that began at an FXSAVE (`fxsave`: where its image's
    /// MXCSR_MASK is, and its length) and completed it (the step ended right after it, still
    /// in ring 3), writes the mask the vCPU shows over the host CPU's
    /// ([`ttvm_vmm::shown_fpu`]). Ring 3 runs natively, so the step held the FXSAVE alone.
    fn show_mxcsr_mask_in_user_mode(
        &mut self,
        rip_before: u64,
        sregs: &kvm_sregs,
        fxsave: Option<(u64, usize)>,
    ) -> Result<(), EngineError> {
        let Some((mask_at, len)) = fxsave else { return Ok(()) };
        if self.rules.fxsave_alone {
            self.last_step_emulated = true;
        }
        self.show_mxcsr_mask_if_done(rip_before.wrapping_add(len as u64), sregs, mask_at)
    }

    /// If the step that began at an FXSAVE ended right `after` it in the same ring (it
    /// completed: a fault runs the handler's first instruction instead), writes the shown
    /// mask over the host's in its image.
    fn show_mxcsr_mask_if_done(&mut self, after: u64, sregs: &kvm_sregs, mask_at: u64) -> Result<(), EngineError> {
        let vm = &mut self.machine.vm;
        if vm.vcpu().rip() == after && vm.vcpu().sregs().cs.dpl == sregs.cs.dpl {
            vm.show_mxcsr_mask_after_fxsave(sregs, mask_at, true).map_err(|e| self.kvm_err(e))?;
        }
        Ok(())
    }

    /// Steps a ring-0 FXSAVE (`mask_at`: where its image's MXCSR_MASK is; `len`: its length)
    /// and writes the mask the vCPU shows over the host CPU's ([`ttvm_vmm::shown_fpu`]).
    /// These hosts' single-step runs the instruction after a ring-0 FXSAVE in the same step;
    /// from format 8 on a hardware breakpoint right after the FXSAVE ends the step there, so
    /// the FXSAVE is a step of its own and nothing reads the host's mask before it is
    /// replaced. The step is an anchor: a native run would leave the host's mask. Traces
    /// recorded before keep the merged step, and the mask is replaced after it if the
    /// image holds the host's (an FXSAVE that faulted stored nothing).
    fn step_fxsave<E: StepEnv>(
        &mut self,
        env: &mut E,
        regs: &kvm_regs,
        sregs: &kvm_sregs,
        mask_at: u64,
        len: usize,
    ) -> Result<StepOutcome, EngineError> {
        let after = regs.rip.wrapping_add(len as u64);
        if !self.rules.fxsave_alone {
            let outcome = self.run_one_step(env)?;
            self.machine.vm.show_mxcsr_mask_after_fxsave(sregs, mask_at, false).map_err(|e| self.kvm_err(e))?;
            return Ok(outcome);
        }
        self.last_step_emulated = true;
        self.machine.vm.vcpu_mut().set_hw_breakpoints([Some(after), None, None, None]).map_err(|e| self.kvm_err(e))?;
        let outcome = self.run_one_step(env)?;
        self.machine.vm.vcpu_mut().set_hw_breakpoints([None; 4]).map_err(|e| self.kvm_err(e))?;
        self.show_mxcsr_mask_if_done(after, sregs, mask_at)?;
        Ok(outcome)
    }

    /// Carries out an IRETQ that returns within ring 0 to the same code and stack segments
    /// (the return from every kernel-mode interrupt and exception). Single-step on these
    /// hosts runs IRETQ together with what follows it, one instruction or more (RDRAND and
    /// the instruction after it, measured), so an RDTSC, RDRAND or CPUID there would run
    /// natively, unlogged, with the host's values. Done here, the next instruction is a
    /// step of its own and is decoded first like any other. Anything unusual (another
    /// CS or SS, TF set in the image, an unreadable frame) is left to the CPU.
    fn try_emulate_iretq(&mut self, code: &[u8], mut regs: kvm_regs, sregs: &kvm_sregs) -> Result<bool, EngineError> {
        if code_mode(sregs) != CodeMode::Long || !matches!(code, [rex, IRET, ..] if rex & 0xf8 == 0x48) {
            return Ok(false);
        }
        let mut frame = [0u8; 40];
        let space = ttvm_vmm::paging::AddressSpace::from_sregs(sregs);
        if space.read_virt(self.machine.vm.ram(), regs.rsp, &mut frame).is_err() {
            return Ok(false);
        }
        let word = |i: usize| u64::from_le_bytes(frame[i * 8..i * 8 + 8].try_into().unwrap_or_default());
        let (rip, cs, rflags, rsp, ss) = (word(0), word(1), word(2), word(3), word(4));
        let same_segments = cs == u64::from(sregs.cs.selector) && ss == u64::from(sregs.ss.selector);
        // NT set makes a 64-bit IRET #GP; non-canonical targets fault: the CPU reports both.
        let faults = regs.rflags & RFLAGS_NT != 0 || !is_canonical(rip) || !is_canonical(rsp);
        // A TF in the image is the host's single-step, caught in the frame of an interrupt
        // taken during a step; from format 7 it is dropped (see `StepRules`), before that
        // the CPU ran the IRETQ and let KVM decide how far the trap after it reached.
        let traps = rflags & RFLAGS_TF != 0 && !self.rules.iretq_drops_stepping_tf;
        if !same_segments || sregs.cs.dpl != 0 || traps || faults {
            return Ok(false);
        }
        regs.rip = rip;
        regs.rsp = rsp;
        regs.rflags = (rflags & IRET_RFLAGS & !RFLAGS_TF) | RFLAGS_FIXED;
        self.machine.vm.vcpu_mut().set_regs(&regs);
        self.end_interrupt_shadow()?;
        // The instruction IRETQ returns to runs before the next interrupt is taken, as it
        // did when the host ran the two as one step: otherwise a guest whose handler takes
        // longer than its timer period (realtime clock, ~13 µs a step) makes no progress.
        self.state.window_open = false;
        self.state.icount += 1;
        Ok(true)
    }

    /// Carries out a [`Merging`] instruction (fences, OUT imm8, SWAPGS) in ring 0, so that
    /// the instruction after it is a step of its own. Elsewhere they are left to the CPU.
    fn try_emulate_merging<E: StepEnv>(
        &mut self,
        env: &mut E,
        code: &[u8],
        mut regs: kvm_regs,
        sregs: &kvm_sregs,
    ) -> Result<Option<StepOutcome>, EngineError> {
        let Some((merging, len)) = classify_merging(code, code_mode(sregs)) else {
            return Ok(None);
        };
        if sregs.cs.dpl != 0 {
            return Ok(None);
        }
        let icount = self.state.icount;
        let mut stop = None;
        match merging {
            Merging::Fence => {}
            Merging::OutImm8 { port, size } => {
                let data = regs.rax.to_le_bytes();
                stop = env.port_out(&mut self.machine.board, icount, port, &data[..size], regs.rip)?;
            }
            Merging::Swapgs => {
                let kvm = |e: ttvm_vmm::vcpu::VcpuError| EngineError::Kvm { icount, message: e.to_string() };
                let vcpu = self.machine.vm.vcpu_mut();
                let kernel_gs = vcpu.get_msr(msr::KERNEL_GS_BASE).map_err(kvm)?;
                vcpu.set_msr(msr::KERNEL_GS_BASE, sregs.gs.base).map_err(kvm)?;
                let mut swapped = *sregs;
                swapped.gs.base = kernel_gs;
                vcpu.set_sregs(&swapped);
            }
        }
        regs.rip = regs.rip.wrapping_add(len as u64);
        self.machine.vm.vcpu_mut().set_regs(&regs);
        self.end_interrupt_shadow()?;
        self.state.window_open = regs.rflags & RFLAGS_IF != 0;
        self.state.icount += 1;
        Ok(Some(stop.map_or(StepOutcome::Continue, StepOutcome::Stopped)))
    }

    /// Emulates the instruction at RIP if it is one of the special ones.
    fn try_emulate<E: StepEnv>(
        &mut self,
        env: &mut E,
        mut regs: kvm_regs,
        sregs: &kvm_sregs,
        code: &[u8],
    ) -> Result<Option<StepOutcome>, EngineError> {
        let Some((special, len)) = classify(code, code_mode(sregs)) else {
            return Ok(None);
        };
        let icount = self.state.icount;
        let mut outcome = StepOutcome::Continue;
        let board = &mut self.machine.board;
        // CR4.TSD: RDTSC and RDTSCP outside ring 0 raise #GP, which the CPU delivers.
        if matches!(special, Special::Rdtsc | Special::Rdtscp) && sregs.cs.dpl != 0 && sregs.cr4 & CR4_TSD != 0 {
            return Ok(None);
        }
        let (value, aux) = match special {
            Special::Rdtsc => (env.emulated_value(board, icount, Emulated::Rdtsc)?, 0),
            Special::Rdtscp => {
                let v = env.emulated_value(board, icount, Emulated::Rdtscp)?;
                (v, self.machine.vm.vcpu().get_msr(msr::TSC_AUX).map_err(|e| self.kvm_err(e))?)
            }
            Special::Rdrand { .. } => (env.emulated_value(board, icount, Emulated::Rdrand)?, 0),
            Special::Rdseed { .. } => (env.emulated_value(board, icount, Emulated::Rdseed)?, 0),
            Special::Rdmsr => {
                if regs.rcx & 0xffff_ffff != u64::from(msr::TSC) || sregs.cs.dpl != 0 {
                    return Ok(None);
                }
                (env.emulated_value(board, icount, Emulated::RdmsrTsc)?, 0)
            }
            Special::Cpuid => {
                // The model, not the host: on PVM hosts KVM passes some host leaves through.
                let [a, b, c, d] = self.machine.vm.cpuid().query(regs.rax as u32, regs.rcx as u32);
                (regs.rax, regs.rbx, regs.rcx, regs.rdx) = (a.into(), b.into(), c.into(), d.into());
                (0, 0)
            }
            Special::Hlt => {
                if sregs.cs.dpl != 0 {
                    return Ok(None); // #GP, delivered by the CPU
                }
                let enabled = regs.rflags & RFLAGS_IF != 0;
                if let HaltOutcome::Stop(stop) = env.halt(board, icount, enabled)? {
                    outcome = StepOutcome::Stopped(stop);
                }
                (0, 0)
            }
        };
        apply_emulated(&mut regs, special, len, value, aux);
        self.last_step_emulated = true;
        self.machine.vm.vcpu_mut().set_regs(&regs);
        self.end_interrupt_shadow()?;
        self.state.window_open = regs.rflags & RFLAGS_IF != 0;
        self.state.icount += 1;
        Ok(Some(outcome))
    }

    /// After an emulated instruction, the STI/MOV SS interrupt shadow that covered it is
    /// over; KVM did not execute it and would still hold the shadow, so clear it.
    fn end_interrupt_shadow(&mut self) -> Result<(), EngineError> {
        if self.state.window_open {
            return Ok(());
        }
        let icount = self.state.icount;
        let kvm = |e: ttvm_vmm::vcpu::VcpuError| EngineError::Kvm { icount, message: e.to_string() };
        let vcpu = self.machine.vm.vcpu_mut();
        let mut ev = vcpu.vcpu_events().map_err(kvm)?;
        if ev.interrupt.shadow != 0 {
            ev.interrupt.shadow = 0;
            ev.flags = kvm_bindings::KVM_VCPUEVENT_VALID_SHADOW;
            vcpu.set_vcpu_events(&ev).map_err(kvm)?;
        }
        Ok(())
    }

    fn run_one_step<E: StepEnv>(&mut self, env: &mut E) -> Result<StepOutcome, EngineError> {
        let icount = self.state.icount;
        let mut stop: Option<StopKind> = None;
        let mut emulated_alone = false;
        let Machine { vm, board, .. } = &mut self.machine;
        loop {
            let rip = vm.vcpu().rip();
            let exit = vm.vcpu_mut().run();
            match exit {
                Ok(VcpuExit::Debug(info)) => {
                    self.last_exit_dr6 = info.dr6;
                    break;
                }
                Ok(VcpuExit::IoIn(port, data)) => env.port_in(board, icount, port, data, rip)?,
                Ok(VcpuExit::IoOut(port, data)) => {
                    if let Some(s) = env.port_out(board, icount, port, data, rip)? {
                        stop = Some(s);
                    }
                }
                Ok(VcpuExit::MmioRead(addr, data)) => env.mmio_read(board, icount, addr, data, rip)?,
                Ok(VcpuExit::MmioWrite(addr, data)) => env.mmio_write(board, icount, addr, data, rip)?,
                Ok(VcpuExit::Hlt) => {
                    // Only reachable when a HLT ran inside a merged step (first instruction
                    // of a handler); single-stepped HLT does not halt on these hosts.
                    break;
                }
                Ok(VcpuExit::Shutdown) => {
                    let s = StopKind::TripleFault;
                    env.guest_stop(board, icount, &s)?;
                    self.state.icount += 1;
                    return Ok(StepOutcome::Stopped(s));
                }
                Ok(VcpuExit::IrqWindowOpen) => {}
                Ok(other) => {
                    let what = format!("{other:?}");
                    let failed_emulation = matches!(other, VcpuExit::InternalError);
                    // An instruction this host's KVM could not execute but ttvm can (INT3,
                    // CLAC/STAC, ...). With strict steps that ends the step, unless it raised
                    // an exception: its delivery merges with the handler's first
                    // instruction, like every exception under single-step. (Running on, as
                    // format 1 did, ran the next instruction inside this step.)
                    let kvm = |e: ttvm_vmm::vcpu::VcpuError| EngineError::Kvm { icount, message: e.to_string() };
                    if failed_emulation && vm.emulate_failed_instruction().map_err(kvm)? {
                        let events = vm.vcpu().vcpu_events().map_err(kvm)?;
                        let exception = events.exception.injected != 0 || events.exception.pending != 0;
                        if self.rules.strict_steps && !exception {
                            emulated_alone = true;
                            break;
                        }
                        continue;
                    }
                    let (regs, sregs) = (vm.vcpu().regs(), vm.vcpu().sregs());
                    let s = StopKind::InternalError(format!(
                        "KVM exit {what} at RIP {:#x} executing `{}`",
                        regs.rip,
                        ttvm_vmm::disasm::describe_at_rip(vm.ram(), &regs, &sregs)
                    ));
                    env.guest_stop(board, icount, &s)?;
                    self.state.icount += 1;
                    return Ok(StepOutcome::Stopped(s));
                }
                Err(e) if e.errno() == libc::EINTR || e.errno() == libc::EAGAIN => {
                    vm.vcpu_mut().set_immediate_exit(false);
                }
                Err(e) => return Err(EngineError::Kvm { icount, message: format!("KVM_RUN: {e}") }),
            }
        }
        if emulated_alone {
            self.end_interrupt_shadow()?;
            self.state.window_open = self.machine.vm.vcpu().regs().rflags & RFLAGS_IF != 0;
        } else {
            self.state.window_open = self.machine.vm.vcpu_mut().interrupt_window_open();
        }
        self.state.icount += 1;
        Ok(match stop {
            Some(s) => StepOutcome::Stopped(s),
            None => StepOutcome::Continue,
        })
    }
}

impl ttvm_vmm::error_kind::Classify for EngineError {
    fn kind(&self) -> ttvm_vmm::error_kind::ErrorKind {
        match self {
            Self::Divergence(_) => ttvm_vmm::error_kind::ErrorKind::Divergence,
            Self::UserModeOnOtherHost { .. } => ttvm_vmm::error_kind::ErrorKind::IncompatibleHost,
            Self::UserMode { .. } | Self::UserModeUnsupported { .. } | Self::Kvm { .. } => {
                ttvm_vmm::error_kind::ErrorKind::KvmInternal
            }
            Self::Io(_) => ttvm_vmm::error_kind::ErrorKind::Host,
            Self::Disk { source, .. } => ttvm_vmm::error_kind::Classify::kind(source),
            Self::Interrupted => ttvm_vmm::error_kind::ErrorKind::Interrupted,
        }
    }
}
