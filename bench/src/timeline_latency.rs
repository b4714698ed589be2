//! Reverse-debugging latency through the Timeline API directly (what gdb's commands cost
//! inside ttvm, without gdb and the protocol): reverse-stepi at several positions, warm
//! (arrived by a seek, which leaves in-memory checkpoints near its target) and cold (those
//! dropped, as after a `continue`); reverse-continue over long spans against the forward
//! replay time of the same span, with a breakpoint and with a write watchpoint; seeks to
//! random icounts.

use std::collections::HashMap;
use std::path::Path;
use std::rc::Rc;
use std::time::Instant;

use serde::Serialize;
use ttvm_replay::recording::Recording;
use ttvm_replay::replay::{ReplaySession, ReplayStep};
use ttvm_replay::timeline::{
    Stop, Timeline, TimelineError, WatchKind, Watchpoint, DEFAULT_TEMP_BUDGET, DEFAULT_TEMP_SPACING,
};

use crate::stats::{Latency, Rng};
use ttvm::exit_code::Exit;

/// What to measure.
#[derive(Clone, Debug)]
pub struct Plan {
    /// Positions for reverse-stepi.
    pub positions: Vec<u64>,
    /// reverse-stepi per position and kind (warm, cold).
    pub rsi_count: usize,
    /// reverse-continue cases: (from icount, span back).
    pub rc: Vec<(u64, u64)>,
    /// Random seeks.
    pub gotos: usize,
}

/// reverse-stepi at one position.
#[derive(Clone, Debug, Serialize)]
pub struct PositionLatency {
    /// The position.
    pub icount: u64,
    /// Time of the seek that got there from the previous position.
    pub seek_ms: f64,
    /// After arriving by a seek (in-memory checkpoints near the target); the first
    /// sample is the first reverse-stepi.
    pub warm: Latency,
    /// After dropping in-memory checkpoints (arrival by `continue`): the first sample
    /// replays from the nearest checkpoint in the trace.
    pub cold: Latency,
}

/// reverse-continue over a span, against forward replay of the same span.
#[derive(Clone, Debug, Serialize)]
pub struct ReverseContinue {
    /// Start position.
    pub from: u64,
    /// Span asked for.
    pub requested_span: u64,
    /// Breakpoint address (an instruction last executed about `requested_span` back).
    pub addr: u64,
    /// Where its last execution before `from` is (found by the forward pass).
    pub expected_at: u64,
    /// Where reverse-continue stopped.
    pub stopped_at: u64,
    /// Whether it stopped on the breakpoint at the expected icount.
    pub correct: bool,
    /// Steps between the stop and the start.
    pub span: u64,
    /// Seconds of reverse-continue.
    pub backward_secs: f64,
    /// Seconds of forward replay of the same span.
    pub forward_secs: f64,
    /// backward / forward.
    pub ratio: f64,
}

/// reverse-continue with a write watchpoint over a span, against forward replay of it.
#[derive(Clone, Debug, Serialize)]
pub struct WatchReverseContinue {
    /// Start position.
    pub from: u64,
    /// Span asked for.
    pub requested_span: u64,
    /// The watched word (8 bytes; the sample kernels identity-map memory): one that the
    /// checkpoint interval `[interval_start, interval_end)` changed and no later interval
    /// before `from` wrote, by the trace's recorded pages.
    pub addr: u64,
    /// Start of the interval of its last change.
    pub interval_start: u64,
    /// End of that interval.
    pub interval_end: u64,
    /// Where reverse-continue stopped.
    pub stopped_at: u64,
    /// Whether it stopped on the watchpoint inside that interval.
    pub correct: bool,
    /// Steps between the stop and the start.
    pub span: u64,
    /// Checkpoint intervals the run passed over unreplayed.
    pub intervals_passed_over: u64,
    /// Seconds of reverse-continue.
    pub backward_secs: f64,
    /// Seconds of forward replay of the same span (single-stepping, as a run without the
    /// skip would), where the forward pass covers it.
    pub forward_secs: f64,
    /// backward / forward.
    pub ratio: f64,
}

/// Everything measured through the Timeline.
#[derive(Clone, Debug, Serialize)]
pub struct TimelineLatency {
    /// Steps in the trace.
    pub trace_steps: u64,
    /// Checkpoints in the trace.
    pub checkpoints: usize,
    /// Steps between them.
    pub checkpoint_every: u64,
    /// Icount at `kmain`.
    pub kmain_icount: Option<u64>,
    /// reverse-stepi per position.
    pub positions: Vec<PositionLatency>,
    /// reverse-continue cases.
    pub reverse_continue: Vec<ReverseContinue>,
    /// The same spans with a write watchpoint instead of a breakpoint.
    pub watch_reverse_continue: Vec<WatchReverseContinue>,
    /// Seeks to random icounts.
    pub goto: Latency,
    /// Steps replayed per random seek, on average.
    pub goto_mean_replayed_steps: f64,
}

fn ms_since(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1e3
}

/// Drops every in-memory checkpoint (keeps the default policy for later ones).
fn drop_temps(tl: &mut Timeline) {
    tl.set_temp_policy(DEFAULT_TEMP_SPACING, 0);
    tl.set_temp_policy(DEFAULT_TEMP_SPACING, DEFAULT_TEMP_BUDGET);
}

/// Arrives at `p` without in-memory checkpoints, as a forward `continue` would.
fn arrive_cold(tl: &mut Timeline, p: u64) -> Result<(), TimelineError> {
    tl.set_temp_policy(DEFAULT_TEMP_SPACING, 0);
    let r = tl.seek(p);
    tl.set_temp_policy(DEFAULT_TEMP_SPACING, DEFAULT_TEMP_BUDGET);
    r.map(|_| ())
}

fn reverse_stepis(tl: &mut Timeline, n: usize) -> Result<Latency, TimelineError> {
    let mut v = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        if tl.step_backward()? != Stop::Done {
            break;
        }
        v.push(ms_since(t));
    }
    Ok(Latency::from_ms(v))
}

/// The icount at which the kernel's `kmain` is first reached.
fn kmain_icount(tl: &mut Timeline, elf: &[u8]) -> Result<Option<u64>, TimelineError> {
    let Some(addr) = ttvm_vmm::symbols::SymbolTable::from_elf(elf, "kernel").ok().and_then(|s| s.address_of("kmain"))
    else {
        return Ok(None);
    };
    tl.seek(0)?;
    tl.add_breakpoint(addr);
    let stop = tl.run_forward();
    tl.remove_breakpoint(addr);
    Ok(matches!(stop?, Stop::Breakpoint { .. }).then(|| tl.icount()))
}

/// The forward pass of a reverse-continue case: replays from a checkpoint before
/// `from - span` to `from`, remembering where each instruction address last executed and
/// how long the replay took to reach each point.
struct ForwardPass {
    last: HashMap<u64, u64>,
    /// (icount, seconds since the start of the pass).
    times: Vec<(u64, f64)>,
}

fn forward_pass(rec: &Rc<Recording>, from: u64, span: u64) -> Result<ForwardPass, ttvm_replay::replay::ReplayError> {
    let mut s = ReplaySession::new(rec.clone(), &ttvm_replay::stepping::host_signature())?;
    let lo = from.saturating_sub(span + span / 5);
    s.restore_checkpoint(rec.checkpoint_before(lo))?;
    let mut last = HashMap::new();
    let started = Instant::now();
    let mut times = vec![(s.icount(), 0.0)];
    while s.icount() < from {
        last.insert(s.engine.machine.vm.vcpu().rip(), s.icount());
        match s.step()? {
            ReplayStep::Stepped => {}
            ReplayStep::Stopped(_) | ReplayStep::AtEnd => break,
        }
        if s.icount().is_multiple_of(1024) {
            times.push((s.icount(), started.elapsed().as_secs_f64()));
        }
    }
    times.push((s.icount(), started.elapsed().as_secs_f64()));
    Ok(ForwardPass { last, times })
}

impl ForwardPass {
    /// Seconds at icount `at`, interpolated.
    fn secs_at(&self, at: u64) -> f64 {
        let i = self.times.partition_point(|&(ic, _)| ic <= at);
        match (i.checked_sub(1).and_then(|j| self.times.get(j)), self.times.get(i)) {
            (Some(&(a, ta)), Some(&(b, tb))) if b > a => ta + (tb - ta) * (at - a) as f64 / (b - a) as f64,
            (Some(&(_, ta)), _) => ta,
            (None, _) => 0.0,
        }
    }

    /// The address whose last execution is closest to `target`.
    fn address_near(&self, target: u64) -> Option<(u64, u64)> {
        self.last.iter().map(|(&a, &at)| (a, at)).min_by_key(|&(a, at)| (at.abs_diff(target), a))
    }
}

/// A word to watch whose last change before `from` is nearest `target`, from the trace's
/// recorded pages: (address, start and end of the interval of that change).
fn word_changed_near(rec: &Recording, from: u64, target: u64) -> Option<(u64, u64, u64)> {
    // Each frame's last writing interval before `from`, newest first.
    let mut seen = std::collections::HashSet::new();
    let mut last: Vec<(usize, u32)> = Vec::new();
    for k in (1..=rec.checkpoint_before(from)).rev() {
        for f in rec.pages.written_before(k as u32)?.iter() {
            if seen.insert(f) {
                last.push((k, f));
            }
        }
    }
    last.sort_by_key(|&(k, f)| (rec.checkpoints[k].engine.icount.abs_diff(target), f));
    let page = |f: u32, k: usize| -> Option<Vec<u8>> {
        match rec.pages.version_at(f, k as u32) {
            Some(blob) => rec.page(blob).ok().map(|p| p.to_vec()),
            None => Some(vec![0u8; 4096]),
        }
    };
    last.into_iter().take(256).find_map(|(k, f)| {
        let (a, b) = (page(f, k - 1)?, page(f, k)?);
        let word = (0..512).find(|&i| a[i * 8..i * 8 + 8] != b[i * 8..i * 8 + 8])?;
        let (lo, hi) = (rec.checkpoints[k - 1].engine.icount, rec.checkpoints[k].engine.icount);
        Some((u64::from(f) * 4096 + word as u64 * 8, lo, hi))
    })
}

/// reverse-continue from `from` with a write watchpoint on a word last changed about
/// `requested_span` back, timed against the forward pass (which covers the span it asked
/// for).
fn watch_reverse_continue(
    path: &Path,
    rec: &Rc<Recording>,
    tl: &mut Timeline,
    pass: &ForwardPass,
    from: u64,
    requested_span: u64,
) -> Result<Option<WatchReverseContinue>, Exit> {
    let Some((addr, lo, hi)) = word_changed_near(rec, from, from.saturating_sub(requested_span)) else {
        return Ok(None);
    };
    let Ok(watch) = Watchpoint::new(addr, 8, WatchKind::Write) else { return Ok(None) };
    tl.seek(from).map_err(|e| Exit::of(path.display(), &e))?;
    drop_temps(tl);
    tl.add_watchpoint(watch);
    let before = tl.stats().skipped_intervals;
    let t = Instant::now();
    let stop = tl.run_backward();
    let backward_secs = t.elapsed().as_secs_f64();
    tl.remove_watchpoint(watch);
    let stop = stop.map_err(|e| Exit::of(path.display(), &e))?;
    let stopped_at = tl.icount();
    let covered = pass.times.first().is_some_and(|&(start, _)| start <= stopped_at);
    let forward_secs = if covered { pass.secs_at(from) - pass.secs_at(stopped_at) } else { f64::NAN };
    Ok(Some(WatchReverseContinue {
        from,
        requested_span,
        addr,
        interval_start: lo,
        interval_end: hi,
        stopped_at,
        correct: matches!(stop, Stop::Watchpoint { .. }) && (lo..hi).contains(&stopped_at),
        span: from.saturating_sub(stopped_at),
        intervals_passed_over: tl.stats().skipped_intervals - before,
        backward_secs,
        forward_secs,
        ratio: if forward_secs > 0.0 { backward_secs / forward_secs } else { f64::NAN },
    }))
}

fn reverse_continue(
    path: &Path,
    rec: &Rc<Recording>,
    tl: &mut Timeline,
    from: u64,
    requested_span: u64,
) -> Result<(Option<ReverseContinue>, Option<WatchReverseContinue>), Exit> {
    let pass = forward_pass(rec, from, requested_span).map_err(|e| Exit::of(path.display(), &e))?;
    let watched = watch_reverse_continue(path, rec, tl, &pass, from, requested_span)?;
    let Some((addr, expected_at)) = pass.address_near(from.saturating_sub(requested_span)) else {
        return Ok((None, watched));
    };
    let forward_secs = pass.secs_at(from) - pass.secs_at(expected_at);
    drop(pass);
    tl.seek(from).map_err(|e| Exit::of(path.display(), &e))?;
    drop_temps(tl);
    tl.add_breakpoint(addr);
    let t = Instant::now();
    let stop = tl.run_backward();
    let backward_secs = t.elapsed().as_secs_f64();
    tl.remove_breakpoint(addr);
    let stop = stop.map_err(|e| Exit::of(path.display(), &e))?;
    let stopped_at = tl.icount();
    let found = ReverseContinue {
        from,
        requested_span,
        addr,
        expected_at,
        stopped_at,
        correct: matches!(stop, Stop::Breakpoint { .. }) && stopped_at == expected_at,
        span: from.saturating_sub(stopped_at),
        backward_secs,
        forward_secs,
        ratio: if forward_secs > 0.0 { backward_secs / forward_secs } else { f64::NAN },
    };
    Ok((Some(found), watched))
}

/// Runs the plan on the trace at `path`.
pub fn measure(path: &Path, plan: &Plan, mut progress: impl FnMut(&str)) -> Result<TimelineLatency, Exit> {
    let rec = ttvm::commands::replay::open_recording(path)?;
    let mut tl = Timeline::new(rec.clone(), &ttvm_replay::stepping::host_signature())
        .map_err(|e| Exit::of(path.display(), &e))?;
    let kmain = kmain_icount(&mut tl, &rec.header().machine.kernel).map_err(|e| Exit::of(path.display(), &e))?;
    let mut positions = Vec::new();
    for &p in plan.positions.iter().filter(|&&p| p > 0 && p <= rec.length()) {
        progress(&format!("reverse-stepi at icount {p}"));
        let t = Instant::now();
        tl.seek(p).map_err(|e| Exit::of(path.display(), &e))?;
        let seek_ms = ms_since(t);
        let warm = reverse_stepis(&mut tl, plan.rsi_count).map_err(|e| Exit::of(path.display(), &e))?;
        drop_temps(&mut tl);
        arrive_cold(&mut tl, p).map_err(|e| Exit::of(path.display(), &e))?;
        let cold = reverse_stepis(&mut tl, plan.rsi_count).map_err(|e| Exit::of(path.display(), &e))?;
        positions.push(PositionLatency { icount: p, seek_ms, warm, cold });
    }
    let (mut rcs, mut watches) = (Vec::new(), Vec::new());
    for &(from, span) in &plan.rc {
        let from = from.min(rec.length());
        progress(&format!("reverse-continue over ~{span} steps from icount {from}"));
        let (r, w) = reverse_continue(path, &rec, &mut tl, from, span)?;
        rcs.extend(r);
        watches.extend(w);
    }
    progress("monitor goto to random icounts");
    let mut rng = Rng::new(0x7743_6f74_6f21);
    let mut samples = Vec::new();
    let before = tl.stats().replayed_steps;
    for _ in 0..plan.gotos {
        let target = rng.below(rec.length());
        let t = Instant::now();
        tl.seek(target).map_err(|e| Exit::of(path.display(), &e))?;
        samples.push(ms_since(t));
    }
    let replayed = tl.stats().replayed_steps - before;
    Ok(TimelineLatency {
        trace_steps: rec.length(),
        checkpoints: rec.checkpoints.len(),
        checkpoint_every: rec.header().checkpoint_every,
        kmain_icount: kmain,
        positions,
        reverse_continue: rcs,
        watch_reverse_continue: watches,
        goto_mean_replayed_steps: if plan.gotos > 0 { replayed as f64 / plan.gotos as f64 } else { 0.0 },
        goto: Latency::from_ms(samples),
    })
}
