//! The gdbstub target over a [`Timeline`]: registers and memory at the current position.
//!
//! Only the timeline's public API is used and nothing about the history is cached, so the
//! same target serves a finished recording and a live one whose history grows.

use std::collections::BTreeMap;
use std::net::TcpStream;

use gdbstub::target::ext::base::singlethread::{SingleThreadBase, SingleThreadResumeOps};
use gdbstub::target::ext::base::BaseOps;
use gdbstub::target::ext::breakpoints::BreakpointsOps;
use gdbstub::target::ext::monitor_cmd::MonitorCmdOps;
use gdbstub::target::{Target, TargetError, TargetResult};
use ttvm_replay::timeline::Timeline;
use ttvm_vmm::paging::AddressSpace;

use crate::error::GdbError;
use crate::regs::{KernelRegs, X86_64Kernel};

/// errno sent for an unreadable address (gdb: "Cannot access memory at address ...").
const EFAULT: u8 = 14;
/// errno sent for a refused register or memory write (read-only history).
pub(crate) const EROFS: u8 = 30;

/// What gdb asked the target to do next; executed by the event loop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resume {
    /// Run forward.
    Continue,
    /// One step forward.
    Step,
    /// Run backward.
    ReverseContinue,
    /// One step backward.
    ReverseStep,
}

/// Which kinds of breakpoint gdb has at an address (both may be set).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BpKinds {
    /// A `Z0` (software) breakpoint.
    pub sw: bool,
    /// A `Z1` (hardware) breakpoint.
    pub hw: bool,
}

/// The target gdbstub drives.
#[derive(Debug)]
pub struct TtvmTarget<'t> {
    pub(crate) tl: &'t mut Timeline,
    /// Set by resume/step/reverse requests, taken by [`TtvmTarget::execute`].
    pub(crate) resume: Option<Resume>,
    pub(crate) bps: BTreeMap<u64, BpKinds>,
    /// The session's socket, watched for Ctrl-C during long monitor commands.
    pub(crate) sock: TcpStream,
    /// The last replay failure, for `monitor info`.
    pub(crate) last_error: Option<String>,
    /// Kernel symbols for monitor output (function names).
    pub(crate) symbols: Option<ttvm_vmm::symbols::SymbolTable>,
    /// A branch armed by `monitor branch FILE` that has not started recording yet.
    pub(crate) branch: Option<crate::monitor_branch::PendingBranch>,
    /// Once a branch started: the parent's history behind it (`family.rs`).
    pub(crate) family: Option<crate::family::Family>,
    /// For a VM of a network recording served with the others: its peers
    /// (`network_peers.rs`).
    pub(crate) peers: Option<crate::network_peers::NetworkPeers>,
}

impl<'t> TtvmTarget<'t> {
    /// A target over `tl`, talking to gdb on `sock`.
    pub fn new(tl: &'t mut Timeline, sock: TcpStream) -> Self {
        // The kernel image in the trace names its functions when it is an ELF with symbols.
        let symbols = ttvm_vmm::symbols::SymbolTable::from_elf(&tl.recording().header().machine.kernel, "the kernel")
            .ok()
            .filter(|t| !t.is_empty());
        Self {
            tl,
            resume: None,
            bps: BTreeMap::new(),
            sock,
            last_error: None,
            symbols,
            branch: None,
            family: None,
            peers: None,
        }
    }

    /// Reads guest-virtual memory at the current position, page by page; returns how many
    /// bytes from the start were readable.
    pub(crate) fn read_virt(&self, start: u64, data: &mut [u8]) -> usize {
        let m = self.tl.machine();
        let space = AddressSpace::from_sregs(&m.vm.vcpu().sregs());
        let mut done = 0usize;
        while done < data.len() {
            let va = start.wrapping_add(done as u64);
            let n = ((0x1000 - (va & 0xfff)) as usize).min(data.len() - done);
            if space.read_virt(m.vm.ram(), va, &mut data[done..done + n]).is_err() {
                break;
            }
            done += n;
        }
        done
    }

    /// The registers at the current position.
    pub(crate) fn registers(&self) -> KernelRegs {
        let vcpu = self.tl.machine().vm.vcpu();
        let (r, s) = (vcpu.regs(), vcpu.sregs());
        let mut out = KernelRegs::default();
        out.core.regs = [
            r.rax, r.rbx, r.rcx, r.rdx, r.rsi, r.rdi, r.rbp, r.rsp, r.r8, r.r9, r.r10, r.r11, r.r12, r.r13, r.r14,
            r.r15,
        ];
        out.core.rip = r.rip;
        out.core.eflags = r.rflags as u32;
        let seg = &mut out.core.segments;
        (seg.cs, seg.ss, seg.ds, seg.es, seg.fs, seg.gs) = (
            u32::from(s.cs.selector),
            u32::from(s.ss.selector),
            u32::from(s.ds.selector),
            u32::from(s.es.selector),
            u32::from(s.fs.selector),
            u32::from(s.gs.selector),
        );
        out.fpu_valid = crate::fpu::read_xsave(vcpu).is_some_and(|x| crate::fpu::apply_fxsave(&mut out.core, &x));
        out.fs_base = s.fs.base;
        out.gs_base = s.gs.base;
        // Shown as 0 if this KVM does not report the MSR.
        out.k_gs_base = vcpu.get_msr(ttvm_vmm::msr::KERNEL_GS_BASE).unwrap_or(0);
        (out.cr0, out.cr2, out.cr3, out.cr4, out.cr8, out.efer) = (s.cr0, s.cr2, s.cr3, s.cr4, s.cr8, s.efer);
        out
    }
}

impl Target for TtvmTarget<'_> {
    type Arch = X86_64Kernel;
    type Error = GdbError;

    #[inline(always)]
    fn base_ops(&mut self) -> BaseOps<'_, Self::Arch, Self::Error> {
        BaseOps::SingleThread(self)
    }

    #[inline(always)]
    fn support_breakpoints(&mut self) -> Option<BreakpointsOps<'_, Self>> {
        Some(self)
    }

    #[inline(always)]
    fn support_monitor_cmd(&mut self) -> Option<MonitorCmdOps<'_, Self>> {
        Some(self)
    }
}

impl SingleThreadBase for TtvmTarget<'_> {
    fn read_registers(&mut self, regs: &mut KernelRegs) -> TargetResult<(), Self> {
        *regs = self.registers();
        Ok(())
    }

    fn write_registers(&mut self, regs: &KernelRegs) -> TargetResult<(), Self> {
        if self.may_edit() {
            return self.write_registers_for_branch(regs).map_err(|e| {
                eprintln!("ttvm: register write refused: {e}");
                TargetError::Errno(EROFS)
            });
        }
        eprintln!(
            "ttvm: refused a register write at icount {}: changing the past would fork the recorded timeline (`monitor branch FILE` first)",
            self.tl.icount()
        );
        Err(TargetError::Errno(EROFS))
    }

    fn read_addrs(&mut self, start: u64, data: &mut [u8]) -> TargetResult<usize, Self> {
        let n = self.read_virt(start, data);
        if n == 0 && !data.is_empty() {
            return Err(TargetError::Errno(EFAULT));
        }
        Ok(n)
    }

    fn write_addrs(&mut self, start: u64, data: &[u8]) -> TargetResult<(), Self> {
        // gdb probes for the binary write packet with an empty write, which changes nothing.
        if data.is_empty() {
            return Ok(());
        }
        if self.may_edit() {
            return self.branch_write(start, data).map_err(|e| {
                eprintln!("ttvm: memory write refused: {e}");
                TargetError::Errno(EFAULT)
            });
        }
        eprintln!(
            "ttvm: refused a {}-byte memory write at {start:#x}, icount {}: changing the past would fork the recorded timeline (`monitor branch FILE` first)",
            data.len(),
            self.tl.icount()
        );
        Err(TargetError::Errno(EROFS))
    }

    #[inline(always)]
    fn support_resume(&mut self) -> Option<SingleThreadResumeOps<'_, Self>> {
        Some(self)
    }
}
