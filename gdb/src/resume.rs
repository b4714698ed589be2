//! Resuming: gdb's requests only record what to do ([`Resume`]); the event loop then calls
//! [`TtvmTarget::execute`], which moves the timeline and says why it stopped.

use gdbstub::common::Signal;
use gdbstub::stub::SingleThreadStopReason;
use gdbstub::target::ext::base::reverse_exec::{ReplayLogPosition, ReverseContOps, ReverseStepOps};
use gdbstub::target::ext::base::singlethread::{SingleThreadResume, SingleThreadSingleStep, SingleThreadSingleStepOps};
use gdbstub::target::ext::breakpoints::WatchKind as GdbWatchKind;
use ttvm_replay::timeline::{Stop, TimelineError, WatchKind, Watchpoint};

use crate::error::GdbError;
use crate::interrupt::Watcher;
use crate::target::{Resume, TtvmTarget};

/// The result of executing a resume request.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Stopped on its own; report this.
    Stopped(SingleThreadStopReason<u64>),
    /// Stopped because gdb sent something (normally Ctrl-C).
    Interrupted,
}

impl SingleThreadResume for TtvmTarget<'_> {
    fn resume(&mut self, _signal: Option<Signal>) -> Result<(), GdbError> {
        // Signals cannot be delivered into a recorded history; gdb only passes one when the
        // user asks for it explicitly, and ignoring it keeps replay faithful.
        self.resume = Some(Resume::Continue);
        Ok(())
    }

    #[inline(always)]
    fn support_single_step(&mut self) -> Option<SingleThreadSingleStepOps<'_, Self>> {
        Some(self)
    }

    #[inline(always)]
    fn support_reverse_cont(&mut self) -> Option<ReverseContOps<'_, (), Self>> {
        Some(self)
    }

    #[inline(always)]
    fn support_reverse_step(&mut self) -> Option<ReverseStepOps<'_, (), Self>> {
        Some(self)
    }
}

impl SingleThreadSingleStep for TtvmTarget<'_> {
    fn step(&mut self, _signal: Option<Signal>) -> Result<(), GdbError> {
        self.resume = Some(Resume::Step);
        Ok(())
    }
}

pub(crate) fn to_gdb_kind(k: WatchKind) -> GdbWatchKind {
    match k {
        WatchKind::Write => GdbWatchKind::Write,
        WatchKind::Read => GdbWatchKind::Read,
        WatchKind::Access => GdbWatchKind::ReadWrite,
    }
}

impl TtvmTarget<'_> {
    /// Carries out the pending resume request. Long runs are watched for Ctrl-C.
    pub fn execute(&mut self) -> Outcome {
        let Some(mode) = self.resume.take() else {
            // Nothing was asked: report a plain stop where we are.
            return Outcome::Stopped(SingleThreadStopReason::Signal(Signal::SIGTRAP));
        };
        let forward = matches!(mode, Resume::Step | Resume::Continue);
        let result = match self.before_move(forward) {
            Err(e) => Err(e),
            Ok(()) => self.run_mode(mode),
        };
        match result {
            Ok(stop) => self.stop_reason(stop),
            Err(e) => {
                let msg = format!("replay failed at icount {}: {e}", self.tl.icount());
                eprintln!("ttvm: {msg}");
                self.last_error = Some(msg);
                Outcome::Stopped(SingleThreadStopReason::Signal(Signal::SIGABRT))
            }
        }
    }

    /// Carries out `mode`; a move that runs into a branch point goes on on its other side
    /// (`family.rs`).
    fn run_mode(&mut self, mode: Resume) -> Result<Stop, TimelineError> {
        let forward = matches!(mode, Resume::Step | Resume::Continue);
        let stop = self.run_mode_once(mode)?;
        if self.crossed_branch_point(&stop, forward)? {
            return self.run_mode_once(mode);
        }
        Ok(stop)
    }

    fn run_mode_once(&mut self, mode: Resume) -> Result<Stop, TimelineError> {
        match mode {
            Resume::Step => self.step_watched(true),
            Resume::ReverseStep => self.step_watched(false),
            Resume::Continue => self.watched_run(|t| t.tl.run_forward()).0,
            // Nothing can stop a reverse run before the start: go there directly instead of
            // scanning every checkpoint interval of the history.
            Resume::ReverseContinue if self.tl.breakpoints().is_empty() && self.tl.watchpoints().is_empty() => {
                self.watched_run(|t| match t.tl.seek(0)? {
                    Stop::Done => Ok(Stop::HistoryStart),
                    other => Ok(other),
                })
                .0
            }
            Resume::ReverseContinue => {
                let origin = self.tl.icount();
                match self.watched_run(|t| t.tl.run_backward()).0 {
                    // An interrupted backward run leaves the position at the start of the
                    // interval it was scanning, possibly before breakpoint hits it had not
                    // examined yet; a later reverse-continue from there would miss them.
                    // Go back to where the run started, which is known to be safe.
                    Ok(Stop::Interrupted) => self.tl.seek(origin).map(|_| Stop::Interrupted),
                    other => other,
                }
            }
        }
    }

    /// Runs `op` with a Ctrl-C watcher on the connection; also says whether gdb interrupted
    /// (or hung up) meanwhile.
    pub(crate) fn watched_run<T>(
        &mut self,
        op: impl FnOnce(&mut Self) -> Result<T, TimelineError>,
    ) -> (Result<T, TimelineError>, bool) {
        // Without a watcher the run still works; it just cannot be interrupted.
        let watcher = Watcher::start(&self.sock, self.tl.interrupt_handle()).ok();
        let r = op(self);
        let fired = watcher.is_some_and(Watcher::finish);
        (r, fired)
    }

    /// One step in either direction. Stepping does not look at write watchpoints inside the
    /// timeline, so they are checked here by comparing the watched bytes, in the same
    /// sense as runs: forward the step that changes them, backward the step back over it.
    fn step_watched(&mut self, forward: bool) -> Result<Stop, TimelineError> {
        let watches: Vec<Watchpoint> =
            self.tl.watchpoints().iter().copied().filter(|w| w.kind != WatchKind::Read).collect();
        let before: Vec<Vec<u8>> = watches.iter().map(|w| self.watched_bytes(w)).collect();
        let stop = if forward { self.tl.step_forward()? } else { self.tl.step_backward()? };
        if stop == Stop::Done {
            for (w, old) in watches.iter().zip(&before) {
                if self.watched_bytes(w) != *old {
                    return Ok(Stop::Watchpoint { watch: *w });
                }
            }
        }
        Ok(stop)
    }

    fn watched_bytes(&self, w: &Watchpoint) -> Vec<u8> {
        let mut buf = vec![0u8; w.len as usize];
        let n = self.read_virt(w.addr, &mut buf);
        buf.truncate(n);
        buf
    }

    fn stop_reason(&self, stop: Stop) -> Outcome {
        Outcome::Stopped(match stop {
            Stop::Done => SingleThreadStopReason::DoneStep,
            Stop::Breakpoint { addr } => match self.bps.get(&addr) {
                Some(k) if k.hw && !k.sw => SingleThreadStopReason::HwBreak(()),
                _ => SingleThreadStopReason::SwBreak(()),
            },
            Stop::Watchpoint { watch } => {
                SingleThreadStopReason::Watch { tid: (), kind: to_gdb_kind(watch.kind), addr: watch.addr }
            }
            Stop::HistoryStart => SingleThreadStopReason::ReplayLog { tid: None, pos: ReplayLogPosition::Begin },
            Stop::HistoryEnd => SingleThreadStopReason::ReplayLog { tid: None, pos: ReplayLogPosition::End },
            Stop::Interrupted => return Outcome::Interrupted,
        })
    }
}
