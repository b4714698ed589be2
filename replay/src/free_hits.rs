//! Finding whether a breakpoint is hit in a checkpoint interval at free-run speed (issue
//! 23, item 2).
//!
//! A run to a breakpoint (backward or forward) must know, for each interval it crosses,
//! whether a position in it has its RIP on a breakpoint. The code lists (`skip.rs`) answer
//! "no" for intervals that never ran the breakpoint's 16-byte block; for the others, the
//! interval is run as `replay --verify` runs it (`ReplaySession::run_anchored`: natively to
//! each anchor's landmark, or to the interval's landmark before format 7, stepping from
//! there) with hardware breakpoints on the breakpoint addresses beside the landmark and a
//! RIP compare at each stepped position, and the state reached is compared with the
//! checkpoint ending the interval. The first breakpoint hit ends the run:
//! the interval is then scanned by single-stepping as before, which pins the exact icount
//! of the last (or first) hit and keeps every stop exactly where stepping puts it (so a hit
//! costs at most the free run up to it on top of the scan). "No hit" is believed only from
//! a run that matched the next checkpoint; the interval is then passed over.
//!
//! A hardware breakpoint fires at least once wherever a run has a position on its address
//! (a repeated string instruction is many positions but one hit: "some" either way), except
//! where this is not used:
//! - ring 3 on hosts whose hardware breakpoints do not exit there (`Ring3Steps::DebugTrap`):
//!   every code page the interval executed and every breakpoint address must be mapped
//!   supervisor-only by the page tables of the interval's first checkpoint (4-level paging),
//!   so no step of it ran in user mode (a virtual address a guest maps supervisor-only in one
//!   address space and user in another would defeat this; no kernel known to ttvm does);
//! - an address that may follow a load of SS (MOV SS, POP SS: the CPU holds debug
//!   exceptions back for one instruction after it), by the bytes before it;
//! - intervals without a landmark or code list (formats before 4), with events before
//!   format 7 (from format 7 they run between their anchors, as `replay --verify` does),
//!   with more than three breakpoints, or whose free run did not match (they are
//!   single-stepped).

use ttvm_vmm::memory::GuestRam;
use ttvm_vmm::paging::{AddressSpace, PagingMode};

use crate::engine::Ring3Steps;
use crate::free_interval::{AnchoredRun, Lookout};
use crate::free_watch::PageHole;
use crate::replay::{ReplayError, ReplaySession};

/// Breakpoint addresses and data breakpoints a free count handles: the fourth debug
/// register holds the landmark.
pub const MAX_COUNTED_BREAKPOINTS: usize = 3;

/// Whether `vaddr` is mapped in `space` and only ring 0 may use it (a page is
/// user-accessible only if every level allows it).
fn supervisor_only(ram: &GuestRam, space: &AddressSpace, vaddr: u64) -> bool {
    space.translate_with_rights(ram, vaddr).is_ok_and(|(_, rights)| !rights.user)
}

/// Whether the instruction at `addr` may follow a load of SS (MOV SS, POP SS), after
/// which the CPU holds debug exceptions back for one instruction, so a hardware breakpoint
/// on it could be missed. Conservative: any byte in the 15 before `addr` that could start
/// such an instruction (0x17, or 0x8E with a ModRM naming SS), or bytes that cannot be
/// read, say "may".
fn may_follow_ss_load(ram: &GuestRam, space: &AddressSpace, addr: u64) -> bool {
    let byte = |a: u64| {
        let phys = space.translate(ram, a).ok()?;
        let mut b = [0u8];
        ram.read(phys, &mut b).ok().map(|()| b[0])
    };
    (1..=15u64).any(|back| {
        let Some(a) = addr.checked_sub(back) else { return false };
        match byte(a) {
            None => true,
            Some(0x17) => true,
            Some(0x8e) => byte(a + 1).is_none_or(|modrm| (modrm >> 3) & 7 == 2),
            Some(_) => false,
        }
    })
}

impl ReplaySession {
    /// Whether no step of interval `k` can have run in ring 3 unseen by a hardware
    /// breakpoint (see the module comment). The machine must be at checkpoint `k`.
    fn no_hidden_ring3(&self, k: usize, addrs: &[u64]) -> bool {
        if self.engine.rules.ring3 != Ring3Steps::DebugTrap {
            return true;
        }
        let Some(Some(code)) = self.rec.interval_code.get(k) else { return false };
        let sregs = self.engine.machine.vm.vcpu().sregs();
        let long_mode_4_level = sregs.cr0 & (1 << 31) != 0 && sregs.efer & (1 << 10) != 0 && sregs.cr4 & (1 << 12) == 0;
        if !long_mode_4_level || sregs.cs.dpl != 0 {
            return false;
        }
        let (ram, space) = (self.engine.machine.vm.ram(), AddressSpace::from_sregs(&sregs));
        code.pages
            .iter()
            .map(|&(page, _)| page << 12)
            .chain(addrs.iter().copied())
            .all(|a| supervisor_only(ram, &space, a))
    }

    /// Whether a breakpoint on one of `addrs` could be held back after a load of SS (the
    /// machine's page tables translate them).
    fn any_after_ss_load(&self, addrs: &[u64]) -> bool {
        let sregs = self.engine.machine.vm.vcpu().sregs();
        let space = AddressSpace::from_sregs(&sregs);
        if !matches!(space.mode(), PagingMode::None | PagingMode::Long4) || sregs.cr4 & (1 << 12) != 0 {
            // Not 4-level paging: cannot read the bytes, so cannot rule it out.
            return true;
        }
        addrs.iter().any(|&a| may_follow_ss_load(self.engine.machine.vm.ram(), &space, a))
    }

    /// Whether some position of persistent-checkpoint interval `k` has its RIP in `addrs`,
    /// or (with `lookout`) some step of it touches a watched range (`free_watch.rs`), found by
    /// a free run ("no" only from one checked against checkpoint `k+1`); `None` when a free
    /// run cannot tell (the caller single-steps the interval). Leaves the replay at
    /// checkpoint `k+1` after a "no", at checkpoint `k` otherwise.
    pub(crate) fn interval_hits_freely(
        &mut self,
        k: usize,
        addrs: &[u64],
        lookout: Lookout<'_>,
    ) -> Result<Option<bool>, ReplayError> {
        let Some(next) = self.rec.checkpoints.get(k + 1) else { return Ok(None) };
        let (start, end) = (self.rec.checkpoints[k].engine.icount, next.engine.icount);
        // Format 7 runs every interval between its anchors; older ones only event-free
        // intervals, to their landmark.
        let Some(anchors) = self.free_run_anchors(k) else { return Ok(None) };
        let registers = addrs.len() + lookout.watch.map_or(0, |w| w.breakpoints().len());
        if (registers == 0 && lookout.hole.is_none())
            || registers > MAX_COUNTED_BREAKPOINTS
            || self.free_failed.contains(&k)
        {
            return Ok(None);
        }
        let native_stretches = anchors.anchors.iter().filter(|l| l.hits > 0).count() as u64;
        if lookout.hole.is_some() && !PageHole::pays_off(end - start, native_stretches) {
            return Ok(None);
        }
        // At the checkpoint's icount the machine is in its state (the invariant seeks rely
        // on): a forward run arriving there by a free run need not restore it again.
        if self.engine.icount() == start {
            // Arrived by stepping: the checkpoint is checked as stepping past it would.
            self.verify_due_checkpoints(start)?;
        } else {
            self.restore_checkpoint(k)?;
        }
        if !self.no_hidden_ring3(k, addrs) || self.any_after_ss_load(addrs) {
            return Ok(None);
        }
        let started = std::time::Instant::now();
        let run = self.run_anchored(&anchors, k + 1, addrs, lookout);
        let cleanup = self.engine.machine.vm.vcpu_mut().set_debug(true, [None; 4]);
        self.free_stats.tried += 1;
        self.free_stats.time += started.elapsed();
        cleanup?;
        match run? {
            AnchoredRun::Matched => {
                self.free_stats.verified += 1;
                self.free_stats.steps += end - start;
                // Without a hit the run goes on from the interval's end.
                self.restore_checkpoint(k + 1)?;
                Ok(Some(false))
            }
            // A hit: the interval is stepped from its start to find it (or them).
            AnchoredRun::Hit => {
                self.restore_checkpoint(k)?;
                Ok(Some(true))
            }
            AnchoredRun::Failed => {
                self.free_failed.insert(k);
                self.restore_checkpoint(k)?;
                Ok(None)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PRESENT: u64 = 1;
    const USER: u64 = 1 << 2;
    const HUGE: u64 = 1 << 7;

    /// Page tables at 0x1000 (PML4) → 0x2000 (PDPT) → 0x3000 (PD): PD entry 0 is a 2 MiB
    /// supervisor page, entry 1 a 2 MiB user page, entry 2 not present.
    fn tables(user_pdpt: bool) -> GuestRam {
        let mut ram = GuestRam::new(ttvm_vmm::memory::MIN_RAM).unwrap();
        let pdpt_flags = if user_pdpt { PRESENT | 2 | USER } else { PRESENT | 2 };
        ram.write(0x1000, &(0x2000 | PRESENT | 2 | USER).to_le_bytes()).unwrap();
        ram.write(0x2000, &(0x3000 | pdpt_flags).to_le_bytes()).unwrap();
        ram.write(0x3000, &(PRESENT | 2 | HUGE).to_le_bytes()).unwrap();
        ram.write(0x3008, &(0x20_0000 | PRESENT | 2 | HUGE | USER).to_le_bytes()).unwrap();
        ram
    }

    /// 4-level long-mode paging from the PML4 at 0x1000.
    const SPACE: AddressSpace = AddressSpace { cr0: 0x8000_0001, cr3: 0x1000, cr4: 1 << 5, efer: 0x500 };

    #[test]
    fn a_page_is_supervisor_only_unless_every_level_allows_user() {
        let ram = tables(true);
        assert!(supervisor_only(&ram, &SPACE, 0x1234), "supervisor 2 MiB page");
        assert!(!supervisor_only(&ram, &SPACE, 0x20_1234), "user at every level");
        assert!(!supervisor_only(&ram, &SPACE, 0x40_0000), "not present");
        let ram = tables(false);
        assert!(supervisor_only(&ram, &SPACE, 0x20_1234), "the PDPT entry forbids user");
        let supervisor = ttvm_vmm::paging::PageRights { writable: true, user: false };
        assert_eq!(SPACE.translate_with_rights(&ram, 0x20_1234), Ok((0x20_1234, supervisor)));
    }

    #[test]
    fn breakpoints_after_a_load_of_ss_are_recognised() {
        let mut ram = tables(true);
        // mov ss, ax (8e d0) at 0x100000, then nop; elsewhere mov ds, ax (8e d8) then nop.
        ram.write(0x10_0000, &[0x8e, 0xd0, 0x90]).unwrap();
        ram.write(0x10_1000, &[0x8e, 0xd8, 0x90]).unwrap();
        assert!(may_follow_ss_load(&ram, &SPACE, 0x10_0002));
        assert!(!may_follow_ss_load(&ram, &SPACE, 0x10_1002));
        assert!(may_follow_ss_load(&ram, &SPACE, 0x40_0005), "unmapped bytes");
        let no_paging = AddressSpace { cr0: 1, ..SPACE };
        assert!(!may_follow_ss_load(&ram, &no_paging, 0x10_1002), "no paging");
    }
}
