//! Why free runs of intervals fell back to stepping, for `replay --verify`'s report: what
//! still single-steps on a trace, and where to look (the Linux fallbacks that led to
//! `free_syscalls.rs` all ended in a read of the UART's IER).

use kvm_ioctls::VcpuExit;

/// The exit a native run took that the recording logged instead.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UnrecordedExit {
    /// A read of an I/O port.
    PortRead(u16),
    /// A write to an I/O port.
    PortWrite(u16),
    /// An MMIO access at this guest-physical address.
    Mmio(u64),
    /// HLT.
    Halt,
    /// An instruction neither the host's KVM nor ttvm carried out.
    Unemulated,
    /// Any other exit.
    Other,
}

impl UnrecordedExit {
    /// What `exit` was.
    pub fn of(exit: &VcpuExit<'_>) -> Self {
        match exit {
            VcpuExit::IoIn(port, _) => Self::PortRead(*port),
            VcpuExit::IoOut(port, _) => Self::PortWrite(*port),
            VcpuExit::MmioRead(addr, _) | VcpuExit::MmioWrite(addr, _) => Self::Mmio(*addr),
            VcpuExit::Hlt => Self::Halt,
            VcpuExit::InternalError => Self::Unemulated,
            _ => Self::Other,
        }
    }
}

impl std::fmt::Display for UnrecordedExit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::PortRead(p) => write!(f, "a read of port {p:#x}"),
            Self::PortWrite(p) => write!(f, "a write to port {p:#x}"),
            Self::Mmio(a) => write!(f, "an MMIO access at {a:#x}"),
            Self::Halt => f.write_str("HLT"),
            Self::Unemulated => f.write_str("an instruction KVM could not execute"),
            Self::Other => f.write_str("another exit"),
        }
    }
}

/// Why one free run of an interval left the recorded path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fallback {
    /// It took an exit the recording logged instead (at this RIP).
    Exit(UnrecordedExit, u64),
    /// More breakpoint exits than its budget, or past its time limit: another path.
    Budget,
    /// A step over a breakpoint, or one the engine took towards an anchor, did not go as
    /// recorded.
    Step,
    /// It arrived, in another state than the end checkpoint's (undefined flags, …).
    State,
}

/// Fallbacks of a replay's free runs, by reason.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Fallbacks {
    /// At an exit the recording logged.
    pub exits: u64,
    /// The first of those exits, and its RIP.
    pub first_exit: Option<(UnrecordedExit, u64)>,
    /// Out of budget or time.
    pub budget: u64,
    /// A step that did not go as recorded.
    pub steps: u64,
    /// Another state at the end.
    pub state: u64,
}

impl Fallbacks {
    /// Counts one.
    pub fn count(&mut self, f: Fallback) {
        match f {
            Fallback::Exit(exit, rip) => {
                self.exits += 1;
                self.first_exit.get_or_insert((exit, rip));
            }
            Fallback::Budget => self.budget += 1,
            Fallback::Step => self.steps += 1,
            Fallback::State => self.state += 1,
        }
    }
}

impl std::fmt::Display for Fallbacks {
    /// "2 ended in another state, 1 at an exit the recording logged (the first: …)".
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut parts = Vec::new();
        if self.state > 0 {
            parts.push(format!("{} ended in another state than their end checkpoint", self.state));
        }
        if self.exits > 0 {
            let first =
                self.first_exit.map(|(e, rip)| format!(" (the first: {e} at RIP {rip:#x})")).unwrap_or_default();
            parts.push(format!("{} took an exit the recording logged{first}", self.exits));
        }
        if self.budget > 0 {
            parts.push(format!("{} ran out of breakpoint budget or time", self.budget));
        }
        if self.steps > 0 {
            parts.push(format!("{} had a step that did not go as recorded", self.steps));
        }
        f.write_str(&parts.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fallbacks_are_counted_by_reason_and_the_first_exit_is_named() {
        let mut f = Fallbacks::default();
        assert_eq!(f.to_string(), "");
        f.count(Fallback::Exit(UnrecordedExit::PortRead(0x3f9), 0xffff_ffff_816a_3c35));
        f.count(Fallback::Exit(UnrecordedExit::Halt, 0x1000));
        f.count(Fallback::State);
        assert_eq!(
            f.to_string(),
            "1 ended in another state than their end checkpoint, 2 took an exit the recording logged \
             (the first: a read of port 0x3f9 at RIP 0xffffffff816a3c35)"
        );
        f.count(Fallback::Budget);
        f.count(Fallback::Step);
        assert!(f
            .to_string()
            .ends_with("1 ran out of breakpoint budget or time, 1 had a step that did not go as recorded"));
    }
}
