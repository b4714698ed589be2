//! Verifying a checkpoint interval at free-run speed (issue 23).
//!
//! Between two persistent checkpoints in which the recording logged no event (no port or
//! MMIO access, no interrupt, no RDTSC/RDRAND, no serial byte) nothing entered the guest
//! from outside: what it did is a function of the state at the first checkpoint alone. So
//! `replay --verify` need not single-step it. It runs the interval with plain KVM_RUN and a
//! hardware breakpoint on the RIP the next checkpoint recorded; at every hit whose
//! registers equal the recorded ones it compares the whole state (every register through
//! the register digest, every RAM page either run dirtied with the recorded version) and,
//! if all of it matches, the interval is verified and the replay goes on from the next
//! checkpoint. A machine in exactly the recorded state is indistinguishable from the
//! recording's, whatever the number of steps it took to get there, so nothing after it can
//! differ.
//!
//! Format 7 extends this to intervals with events. The recording lists, per interval, its
//! anchors: every step that logged an event or that the engine emulated (CPUID, HLT), each
//! with a landmark for the stretch before it ([`IntervalAnchors`]). The replay runs natively
//! to each anchor's landmark, single-steps to the anchor and lets the engine carry out the
//! anchor's step exactly as when stepping (its events come from the log and are checked),
//! and compares the whole state at the interval's end as above. Serial output produced on
//! the way is held back until the interval matched, so a fallback does not echo it twice.
//! Landmarks count only kernel-mode steps: a hardware breakpoint on a user-mode address
//! does not exit on PVM hosts, so a stretch spent in user mode is single-stepped.
//!
//! Anything else falls back to single-stepping the interval from its first checkpoint,
//! exactly as before: an exit the recording would have logged (I/O, HLT, an instruction
//! the host cannot execute), a step-over that does not come back as a debug exit, or no
//! match within a budget of breakpoint exits (the native run took a path the recording did
//! not: CPUID values that ttvm's model answers differently from the host in intervals
//! without anchors, undefined flags the exact engine canonicalises, single-step merges the
//! engine avoids). A fallback costs the time spent trying; a pass costs a fraction of
//! stepping. What still single-steps, always: intervals with events in traces before
//! format 7, the stretch after each landmark, and stretches spent in user mode.

use std::time::{Duration, Instant};

use kvm_ioctls::VcpuExit;
use ttvm_vmm::kick::Kicker;
use ttvm_vmm::memory::PAGE_SIZE;
use ttvm_vmm::vcpu::RegsState;

use crate::checkpoint::register_digest;
use crate::engine::RFLAGS_IF;
use crate::free_fallback::{Fallback, Fallbacks, UnrecordedExit};
use crate::free_syscalls::PageFaultHit;
use crate::free_watch::{DataWatch, PageHole};
use crate::replay::{ReplayError, ReplaySession};
use crate::trace::{AnchorLandmark, IntervalAnchors};

/// What free runs of intervals did in a replay (for its report and the benchmarks).
#[derive(Clone, Copy, Debug, Default)]
pub struct FreeIntervalStats {
    /// Intervals tried.
    pub tried: u64,
    /// Intervals verified at free-run speed.
    pub verified: u64,
    /// Steps those intervals hold.
    pub steps: u64,
    /// Time spent in free runs, the ones that fell back included.
    pub time: Duration,
    /// Exits at the breakpoint on an end checkpoint's RIP (each costs an exit and a step).
    pub breakpoint_hits: u64,
    /// Verified intervals that held events (run between their anchors, format 7 on).
    pub with_events: u64,
    /// Native runs that ended because an instruction touched a watched range (a data
    /// breakpoint or the page hole, `free_watch.rs`).
    pub touched: u64,
    /// Why the others fell back.
    pub fallbacks: Fallbacks,
}

/// What a free run does at a breakpoint hit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum AtHit {
    /// It has arrived.
    Stop,
    /// Step over the breakpoint and run on.
    GoOn,
}

/// How a native run with breakpoints ended ([`ReplaySession::run_hitting`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum NativeRun {
    /// A hit it was asked about said it has arrived.
    Arrived,
    /// An instruction touched a watched range (`free_watch.rs`).
    Touched,
    /// An exit the recording would have logged, the budget or a failed step-over.
    FellBack,
}

/// What a run through an interval between its anchors came to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum AnchoredRun {
    /// It reached the end checkpoint's state.
    Matched,
    /// A position's RIP was one of the addresses watched for, or an instruction touched a
    /// watched range.
    Hit,
    /// Something did not go as recorded (the caller single-steps the interval).
    Failed,
}

/// What trying to run an interval freely came to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FreeInterval {
    /// Not tried: the position is not at a checkpoint, the interval has events, it ends
    /// past the limit, or an earlier try of it failed.
    NotEligible,
    /// Ran and matched the next checkpoint; the replay is there now.
    Verified,
    /// Ran and did not match (see the module comment); the replay is back at the
    /// interval's first checkpoint and must single-step it.
    FellBack,
}

/// Breakpoint exits a free run of an interval of `steps` steps may take before it is given
/// up: each costs an exit and a step over the breakpoint, a few steps' worth, so past this
/// many single-stepping is as cheap. A count, not a time, so whether an interval passes
/// does not depend on how loaded the host is.
fn hit_budget(steps: u64) -> u64 {
    (steps / 3).max(64)
}

/// Wall-clock bound for a guest that neither hits the breakpoint nor exits (it took a
/// path the recording did not and spins): only a safety net, far above any real run.
fn time_limit(steps: u64) -> Duration {
    Duration::from_secs(1) + Duration::from_micros(steps.saturating_mul(50))
}

/// What a native run looks out for besides its breakpoints: read and access watchpoints,
/// by data breakpoints (`watch`) or a page hole (`free_watch.rs`).
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Lookout<'a> {
    /// The watchpoints (decoded at stepped positions) and their data breakpoints.
    pub watch: Option<&'a DataWatch>,
    /// The watched pages to take out of KVM's memory, where data breakpoints do not fire.
    pub hole: Option<&'a PageHole>,
}

/// The debug registers and hole of a native run.
struct DebugSetup<'a> {
    bps: [Option<u64>; 4],
    /// Which debug registers hold data breakpoints.
    data_mask: u64,
    hole: Option<&'a PageHole>,
}

/// How one KVM_RUN of a native run ended.
enum NativeExit {
    /// A debug exit on an instruction breakpoint (or a single step).
    Debug,
    /// An instruction touched a watched range (a data breakpoint or the page hole).
    Touched,
    /// Anything else.
    Other(UnrecordedExit),
}

impl ReplaySession {
    /// If the position is a persistent checkpoint `k` and the interval to checkpoint `k+1`
    /// (which must not lie past `limit`) holds no event, runs it freely and verifies the
    /// state reached against checkpoint `k+1`.
    pub fn try_free_interval(&mut self, limit: u64) -> Result<FreeInterval, ReplayError> {
        let icount = self.engine.icount();
        let k = self.rec.checkpoint_before(icount);
        let Some(next) = self.rec.checkpoints.get(k + 1) else { return Ok(FreeInterval::NotEligible) };
        let end = next.engine.icount;
        let has_events = self.rec.interval_has_events(k);
        let anchors = self.free_run_anchors(k);
        if self.rec.checkpoints[k].engine.icount != icount
            || end > limit
            || !self.verify_checkpoints
            || self.free_failed.contains(&k)
            || (has_events && anchors.is_none())
        {
            return Ok(FreeInterval::NotEligible);
        }
        // The checkpoint the interval starts at is checked as stepping would.
        self.verify_due_checkpoints(icount)?;
        let started = Instant::now();
        self.env.held_echo = Some(Vec::new());
        self.free_fallback = None;
        let matched = match anchors {
            Some(anchors) => {
                self.run_anchored(&anchors, k + 1, &[], Lookout::default()).map(|r| r == AnchoredRun::Matched)
            }
            None => self.run_until_state_of(k + 1, end - icount),
        };
        let held = self.env.held_echo.take().unwrap_or_default();
        let cleanup = self.engine.machine.vm.vcpu_mut().set_debug(true, [None; 4]);
        self.free_stats.tried += 1;
        self.free_stats.time += started.elapsed();
        cleanup?;
        if matched? {
            if let (Some(echo), false) = (&mut self.env.echo, held.is_empty()) {
                echo.write(&held);
            }
            self.free_stats.verified += 1;
            if has_events {
                self.free_stats.with_events += 1;
            }
            self.free_stats.steps += end - icount;
            // Registers, devices, clock and log position of the next checkpoint: the same
            // state (just compared), with the bookkeeping a restore does.
            self.restore_checkpoint(k + 1)?;
            return Ok(FreeInterval::Verified);
        }
        self.free_failed.insert(k);
        let why = self.free_fallback.take().unwrap_or(Fallback::State);
        self.free_stats.fallbacks.count(why);
        self.restore_checkpoint(k)?;
        // The native run may have let KVM map pages the guest maps only later (shadow page
        // tables, which the restore cannot reach): stepping must meet the faults recorded.
        self.engine.machine.vm.drop_guest_mappings().map_err(|e| self.kvm_error(e.to_string()))?;
        Ok(FreeInterval::FellBack)
    }

    /// Runs freely with a breakpoint on checkpoint `target`'s RIP until the whole state
    /// equals it (true), or an exit, the budget or a failed step-over ends the try (false).
    fn run_until_state_of(&mut self, target: usize, steps: u64) -> Result<bool, ReplayError> {
        let want = self.rec.checkpoints[target].vcpu.regs;
        let run = self.run_hitting(
            [Some(want.rip), None, None, None],
            Lookout::default(),
            steps,
            hit_budget(steps),
            |s, _| {
                let there = RegsState::from(&s.engine.machine.vm.vcpu().regs()) == want && s.state_equals(target)?;
                Ok(if there { AtHit::Stop } else { AtHit::GoOn })
            },
        );
        Ok(run? == NativeRun::Arrived)
    }

    /// Runs natively with hardware breakpoints on `bps`, asking `at_hit` at every hit (with
    /// the number of hits so far) whether the run has arrived, and with `lookout`'s data
    /// breakpoints in the debug registers left free and its page hole taken out of KVM's
    /// memory: the first access to a watched range either way ends the run
    /// ([`NativeRun::Touched`]). Falls back if an exit the recording would have logged,
    /// `max_hits`, the time limit for an interval of `steps` steps or a failed step-over
    /// ends it first.
    pub(crate) fn run_hitting(
        &mut self,
        bps: [Option<u64>; 4],
        lookout: Lookout<'_>,
        steps: u64,
        max_hits: u64,
        at_hit: impl FnMut(&mut Self, u64) -> Result<AtHit, ReplayError>,
    ) -> Result<NativeRun, ReplayError> {
        let data = lookout.watch.map_or(&[][..], |w| w.breakpoints());
        // Stranded user-mode SYSCALLs are caught in a debug register the caller left free
        // (`free_syscalls.rs`); with none free, such a run leaves the recorded path.
        let mut trap = self.syscall_trap().filter(|t| !bps.contains(&Some(t.handler)));
        let mut bps = bps;
        let free_slots = bps.iter().filter(|b| b.is_none()).count();
        match (&trap, bps.iter().position(Option::is_none)) {
            (Some(t), Some(free)) if free_slots > data.len() => bps[free] = Some(t.handler),
            _ => trap = None,
        }
        // The data breakpoints take the slots still free.
        let mut data_slots = [None; 4];
        let mut data_mask = 0u64;
        let mut wanted = data.iter();
        for (i, slot) in data_slots.iter_mut().enumerate() {
            if bps[i].is_none() {
                if let Some(d) = wanted.next() {
                    *slot = Some(*d);
                    data_mask |= 1 << i;
                }
            }
        }
        if wanted.next().is_some() {
            return Ok(NativeRun::FellBack);
        }
        self.engine.machine.vm.vcpu_mut().set_data_breakpoints(data_slots)?;
        if let Some(hole) = lookout.hole {
            self.engine.machine.vm.hide_frames(hole.frames()).map_err(|e| self.kvm_error(e.to_string()))?;
        }
        let debug = DebugSetup { bps, data_mask, hole: lookout.hole };
        let run = self.run_hitting_with(debug, trap, steps, max_hits, at_hit);
        let cleanup = self.engine.machine.vm.vcpu_mut().set_data_breakpoints([None; 4]);
        let shown = self.engine.machine.vm.show_all_frames().map_err(|e| self.kvm_error(e.to_string()));
        let run = run?;
        cleanup?;
        shown?;
        self.free_stats.touched += u64::from(run == NativeRun::Touched);
        Ok(run)
    }

    /// [`ReplaySession::run_hitting`] with the debug registers chosen and the hole hidden.
    fn run_hitting_with(
        &mut self,
        debug: DebugSetup<'_>,
        mut trap: Option<crate::free_syscalls::SyscallTrap>,
        steps: u64,
        max_hits: u64,
        mut at_hit: impl FnMut(&mut Self, u64) -> Result<AtHit, ReplayError>,
    ) -> Result<NativeRun, ReplayError> {
        let bps = debug.bps;
        let vcpu = self.engine.machine.vm.vcpu_mut();
        vcpu.set_debug(false, bps)?;
        let immediate_exit: *mut u8 = &mut vcpu.kvm_run().immediate_exit;
        // SAFETY: the kvm_run page lives as long as the vCPU, which outlives this function;
        // the kicker (and its SIGALRM handler's use of the pointer) is dropped before return.
        let kicker = unsafe { Kicker::install(immediate_exit) }.map_err(|e| self.kvm_error(e.to_string()))?;
        kicker.arm(time_limit(steps));
        let mut hits = 0u64;
        while hits < max_hits {
            let exit = self.run_watching(&debug);
            match exit {
                Ok(NativeExit::Touched) => return Ok(NativeRun::Touched),
                Ok(NativeExit::Debug) => {
                    if let Some(t) = trap.as_mut().filter(|t| self.at_trap(t)) {
                        self.free_stats.breakpoint_hits += 1;
                        if self.on_page_fault(t)? == PageFaultHit::Ordinary {
                            if let Some(ended) = self.step_over_breakpoint(&debug)? {
                                return Ok(ended);
                            }
                        }
                        continue;
                    }
                    hits += 1
                }
                // An instruction this host's KVM cannot execute in ring 0 and ttvm can
                // (CLAC/STAC around every user copy in Linux, INT3…), as stepping does.
                Ok(NativeExit::Other(UnrecordedExit::Unemulated)) if self.emulated_for_kvm()? => continue,
                Ok(NativeExit::Other(what)) => {
                    // The exit is left unanswered: the restore that follows finishes it.
                    let rip = self.engine.machine.vm.vcpu().rip();
                    return self.fell_back(Fallback::Exit(what, rip));
                }
                // The kick: the guest ran past the time limit without a breakpoint exit.
                Err(e) if e.errno() == libc::EINTR || e.errno() == libc::EAGAIN => {
                    self.engine.machine.vm.vcpu_mut().set_immediate_exit(false);
                    return self.fell_back(Fallback::Budget);
                }
                Err(e) => return Err(self.kvm_error(format!("KVM_RUN in a free interval: {e}"))),
            }
            self.free_stats.breakpoint_hits += 1;
            if at_hit(self, hits)? == AtHit::Stop {
                return Ok(NativeRun::Arrived);
            }
            if let Some(ended) = self.step_over_breakpoint(&debug)? {
                return Ok(ended);
            }
        }
        self.fell_back(Fallback::Budget)
    }

    /// Notes why a free run failed (for the report), and says it did.
    fn fell_back(&mut self, why: Fallback) -> Result<NativeRun, ReplayError> {
        self.free_fallback = Some(why);
        Ok(NativeRun::FellBack)
    }

    /// The anchors a free run of interval `k` follows: format 7's own, or (formats 4-6,
    /// intervals without events) the interval's landmark as the stretch before its one
    /// anchor, the checkpoint that ends it. `None` where neither is known.
    pub(crate) fn free_run_anchors(&self, k: usize) -> Option<IntervalAnchors> {
        if let Some(anchors) = self.rec.interval_anchors.get(k).cloned().flatten() {
            return Some(anchors);
        }
        let (start, end) = (self.rec.checkpoints.get(k)?.engine.icount, self.rec.checkpoints.get(k + 1)?.engine.icount);
        let l = self.rec.interval_landmarks.get(k).copied().flatten()?;
        let usable = !self.rec.interval_has_events(k) && l.icount >= start && l.icount < end && l.hits > 0;
        usable.then(|| IntervalAnchors {
            checkpoint: l.checkpoint,
            anchors: vec![AnchorLandmark { anchor: end, rip: l.rip, hits: l.hits, at: l.icount }],
            waypoints: Vec::new(),
        })
    }

    /// Runs the interval ending at checkpoint `target` stretch by stretch: natively to each
    /// anchor's landmark, single-stepping from there to the anchor, and letting the engine
    /// carry out the anchor's step as it does when stepping (its events come from the log
    /// and are checked); then compares the state with the checkpoint. With `addrs` (at
    /// most three, `free_hits.rs`), the first position whose RIP is one of them ends the
    /// run as [`AnchoredRun::Hit`]: hardware breakpoints on them in the native stretches,
    /// a RIP compare at every stepped position.
    pub(crate) fn run_anchored(
        &mut self,
        anchors: &IntervalAnchors,
        target: usize,
        addrs: &[u64],
        lookout: Lookout<'_>,
    ) -> Result<AnchoredRun, ReplayError> {
        let end = self.rec.checkpoints[target].engine.icount;
        if let Some(ended) = self.run_stretches(&anchors.anchors, end, addrs, lookout)? {
            return Ok(ended);
        }
        Ok(if self.engine.icount() == end && self.state_equals(target)? {
            AnchoredRun::Matched
        } else {
            AnchoredRun::Failed
        })
    }

    /// Runs the stretches before `anchors` (of one interval, in order) as
    /// [`ReplaySession::run_anchored`] does, up to step `end`: the last anchor's step when it
    /// ends the interval (its step belongs to the next), else right before the step of the
    /// last anchor (a waypoint, `free_seek.rs`). `None` when it arrived there; otherwise
    /// how the run ended ([`AnchoredRun::Hit`] or [`AnchoredRun::Failed`]).
    pub(crate) fn run_stretches(
        &mut self,
        anchors: &[AnchorLandmark],
        end: u64,
        addrs: &[u64],
        lookout: Lookout<'_>,
    ) -> Result<Option<AnchoredRun>, ReplayError> {
        let at_addr = |s: &Self| addrs.contains(&s.engine.machine.vm.vcpu().rip());
        let watch = lookout.watch;
        if at_addr(self) {
            return Ok(Some(AnchoredRun::Hit));
        }
        for l in anchors {
            let here = self.engine.icount();
            if l.hits > 0 {
                let mut bps = [Some(l.rip), None, None, None];
                for (slot, &a) in bps[1..].iter_mut().zip(addrs) {
                    *slot = Some(a);
                }
                let (mut hit, mut counted) = (false, 0u64);
                let run = self.run_hitting(bps, lookout, l.anchor - here, l.hits, |s, _| {
                    let rip = s.engine.machine.vm.vcpu().rip();
                    if addrs.contains(&rip) {
                        hit = true;
                        return Ok(AtHit::Stop);
                    }
                    counted += u64::from(rip == l.rip);
                    Ok(if counted == l.hits { AtHit::Stop } else { AtHit::GoOn })
                })?;
                match run {
                    NativeRun::Touched => return Ok(Some(AnchoredRun::Hit)),
                    _ if hit => return Ok(Some(AnchoredRun::Hit)),
                    NativeRun::FellBack => return Ok(Some(AnchoredRun::Failed)),
                    NativeRun::Arrived => {}
                }
                // At the landmark's step: the engine single-steps the rest of the stretch.
                self.engine.machine.vm.vcpu_mut().set_debug(true, [None; 4])?;
                let window_open = self.engine.machine.vm.vcpu().regs().rflags & RFLAGS_IF != 0;
                self.engine.set_state(crate::engine::EngineState { icount: l.at, window_open });
            }
            // The rest of the stretch, then the anchor's own step (the end checkpoint is
            // an anchor too, but its step belongs to the next interval).
            let last = if l.anchor >= end { end } else { l.anchor + 1 };
            while self.engine.icount() < last {
                // A stepped position is decoded, as stepping decides.
                if watch.is_some_and(|w| w.next_step_touches(&self.engine.machine)) {
                    return Ok(Some(AnchoredRun::Hit));
                }
                match self.engine.step(&mut self.env) {
                    Ok(crate::engine::StepOutcome::Continue) => {}
                    // The guest stops in the recording's last step, which the final
                    // checkpoint follows.
                    Ok(crate::engine::StepOutcome::Stopped(_)) if self.engine.icount() == end => {}
                    // A stop, a divergence or anything else the recording did not have
                    // here: the interval is stepped from its start instead, which reports
                    // it properly.
                    Ok(_) | Err(_) => {
                        self.free_fallback = Some(Fallback::Step);
                        return Ok(Some(AnchoredRun::Failed));
                    }
                }
                if self.engine.icount() < end && at_addr(self) {
                    return Ok(Some(AnchoredRun::Hit));
                }
            }
        }
        Ok(None)
    }

    pub(crate) fn kvm_error(&self, message: String) -> ReplayError {
        ReplayError::Engine(crate::engine::EngineError::Kvm { icount: self.engine.icount(), message })
    }

    /// Executes the instruction at the breakpoint by one single step (a hardware breakpoint
    /// fires again on resume until its instruction has run), looking out as the run does.
    /// `None` when it did and the run goes on; else how the run ended: touched, or fell back
    /// because the step exited any other way than a debug exit.
    fn step_over_breakpoint(&mut self, debug: &DebugSetup<'_>) -> Result<Option<NativeRun>, ReplayError> {
        self.engine.machine.vm.vcpu_mut().set_debug(true, [None; 4])?;
        let stepped = match self.run_watching(debug) {
            Ok(NativeExit::Touched) => return Ok(Some(NativeRun::Touched)),
            Ok(NativeExit::Debug) => true,
            // The instruction at the breakpoint is one ttvm emulates for KVM: done then.
            // (Those touch no memory: CLAC, STAC, INT3.)
            Ok(NativeExit::Other(UnrecordedExit::Unemulated)) => self.emulated_for_kvm()?,
            _ => false,
        };
        if !stepped {
            return self.fell_back(Fallback::Step).map(Some);
        }
        self.engine.machine.vm.vcpu_mut().set_debug(false, debug.bps)?;
        Ok(None)
    }

    /// One KVM_RUN of a native run, looking out for the watched ranges: a debug exit that
    /// names a data breakpoint in DR6 touched one; the accesses to the hole's pages that
    /// miss the watched bytes are completed from and into ttvm's RAM (a write noted as one
    /// ttvm carried out) and the run goes on, and one that touches them is reported (its
    /// exit left unanswered: the restore that follows finishes it).
    fn run_watching(&mut self, debug: &DebugSetup<'_>) -> Result<NativeExit, kvm_ioctls::Error> {
        let touched = |addr, len: usize, write| debug.hole.is_some_and(|h| h.touched(addr, len as u64, write));
        loop {
            let (vcpu, mut hidden) = self.engine.machine.vm.run_parts();
            match vcpu.run()? {
                VcpuExit::Debug(arch) if arch.dr6 & debug.data_mask != 0 => return Ok(NativeExit::Touched),
                VcpuExit::Debug(_) => return Ok(NativeExit::Debug),
                VcpuExit::MmioRead(addr, data) if hidden.holds(addr) => {
                    if touched(addr, data.len(), false) || !hidden.read(addr, data) {
                        return Ok(NativeExit::Touched);
                    }
                }
                VcpuExit::MmioWrite(addr, data) if hidden.holds(addr) => {
                    if touched(addr, data.len(), true) || !hidden.write(addr, data) {
                        return Ok(NativeExit::Touched);
                    }
                }
                other => return Ok(NativeExit::Other(UnrecordedExit::of(&other))),
            }
        }
    }

    /// After KVM_EXIT_INTERNAL_ERROR: whether ttvm carried out the instruction KVM could
    /// not (`Vm::emulate_failed_instruction`).
    fn emulated_for_kvm(&mut self) -> Result<bool, ReplayError> {
        self.engine.machine.vm.emulate_failed_instruction().map_err(|e| self.kvm_error(e.to_string()))
    }

    /// Whether the machine is exactly in checkpoint `k`'s recorded state: every register
    /// (the digest) and every RAM page written since the replay's base checkpoint, or
    /// recorded as written, equal to the recorded version at `k`.
    pub(crate) fn state_equals(&mut self, k: usize) -> Result<bool, ReplayError> {
        let cp = &self.rec.checkpoints[k];
        let state = self.engine.machine.vm.vcpu_mut().save_state()?;
        if register_digest(&state) != cp.register_digest || state.regs != cp.vcpu.regs {
            return Ok(false);
        }
        self.ram.collect_dirty(&self.engine.machine.vm)?;
        let mut pages = self.ram.differing().clone();
        pages |= self.rec.pages.changed_between(self.ram.base(), k as u32);
        let mut page = vec![0u8; PAGE_SIZE];
        for pfn in &pages {
            match self.rec.pages.version_at(pfn, k as u32) {
                Some(blob) => self.rec.copy_page(blob, &mut page).map_err(crate::ram::RamError::Trace)?,
                None => page.fill(0),
            }
            if self.engine.machine.vm.ram().page(pfn as usize) != &page[..] {
                return Ok(false);
            }
        }
        Ok(true)
    }
}
