//! Virtual time for the exact engine.
//!
//! In `icount` mode (the default) guest time is a pure function of the instruction count:
//! `now_ns = icount * NS_PER_STEP + idle_ns`, where `idle_ns` grows only when the guest
//! executes HLT and the engine skips ahead to the next device deadline. Two recordings of
//! the same kernel with the same input are therefore identical.
//!
//! In `realtime` mode device time follows the host's monotonic clock, so timer interrupts
//! land at different instructions from run to run (what makes a racy kernel fail only
//! sometimes). Every value derived from it that reaches the guest is logged, so replay never
//! reads the host clock.

use std::time::Instant;

use serde::{Deserialize, Serialize};

/// Virtual nanoseconds per step in icount mode: a 100 MIPS virtual CPU. A 1 kHz timer then
/// fires every 100 000 instructions, close to the ring-0 speed of these hosts' KVM (about
/// 1.5 M instr/s emulated), so virtual and host time stay within an order of magnitude and
/// timer-driven kernels behave as they would on hardware.
pub const NS_PER_STEP: u64 = 10;

/// The guest TSC frequency: 1 GHz, so TSC ticks equal virtual nanoseconds.
pub const TSC_HZ: u64 = 1_000_000_000;

/// How device time is derived.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ClockMode {
    /// From the instruction count (deterministic).
    Icount,
    /// From the host clock (logged).
    Realtime,
}

impl std::fmt::Display for ClockMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ClockMode::Icount => "icount",
            ClockMode::Realtime => "realtime",
        })
    }
}

/// The engine's clock; checkpoints save it as a [`crate::persist::EngineClockState`].
#[derive(Clone, Debug)]
pub struct EngineClock {
    /// Mode.
    pub mode: ClockMode,
    /// Time skipped by HLT (icount mode).
    pub idle_ns: u64,
    /// Last value returned, to keep realtime monotonic across restores.
    pub last_ns: u64,
    /// The host instant realtime mode counts from (not saved).
    origin: Option<Instant>,
    /// Host time already elapsed at `origin` (realtime mode).
    pub origin_ns: u64,
}

impl EngineClock {
    /// A clock at time 0.
    pub fn new(mode: ClockMode) -> Self {
        Self { mode, idle_ns: 0, last_ns: 0, origin: None, origin_ns: 0 }
    }

    /// Guest time at the start of step `icount`.
    pub fn now_ns(&mut self, icount: u64) -> u64 {
        let t = match self.mode {
            ClockMode::Icount => icount.saturating_mul(NS_PER_STEP).saturating_add(self.idle_ns),
            ClockMode::Realtime => {
                let origin = *self.origin.get_or_insert_with(|| {
                    let o = Instant::now();
                    self.origin_ns = self.last_ns;
                    o
                });
                self.origin_ns + origin.elapsed().as_nanos() as u64
            }
        };
        self.last_ns = self.last_ns.max(t);
        self.last_ns
    }

    /// HLT: skip guest time forward to `deadline_ns` (icount mode). In realtime mode the
    /// caller sleeps instead.
    /// A clock whose time starts at `ns` instead of 0: a recording that starts from a
    /// machine that already ran (a booted snapshot) keeps its device time going. In icount
    /// mode the offset is idle time, so it is saved and restored with every checkpoint.
    pub fn starting_at(mode: ClockMode, ns: u64) -> Self {
        let mut clock = Self::new(mode);
        clock.last_ns = ns;
        if mode == ClockMode::Icount {
            clock.idle_ns = ns;
        }
        clock
    }

    /// HLT until `deadline_ns`: in icount mode the skipped time becomes idle time, so the
    /// clock reads the deadline from this icount on; realtime mode skips nothing.
    pub fn idle_until(&mut self, icount: u64, deadline_ns: u64) {
        if self.mode == ClockMode::Icount {
            let now = self.now_ns(icount);
            if deadline_ns > now {
                self.idle_ns += deadline_ns - now;
            }
        }
    }

    /// The TSC value at guest time `ns`.
    pub fn tsc_at(ns: u64) -> u64 {
        ((u128::from(ns) * u128::from(TSC_HZ)) / 1_000_000_000) as u64
    }

    /// The guest time at which the TSC reads `tsc` (the inverse of [`Self::tsc_at`]): a
    /// recording that starts from a running machine starts its clock no earlier, so the
    /// TSC it derives never goes back behind what the guest last read.
    pub fn ns_at_tsc(tsc: u64) -> u64 {
        ((u128::from(tsc) * 1_000_000_000) / u128::from(TSC_HZ)) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn icount_time_is_a_function_of_icount_and_idle() {
        let mut c = EngineClock::new(ClockMode::Icount);
        assert_eq!(c.now_ns(100), 100 * NS_PER_STEP);
        c.idle_until(100, 5_000);
        assert_eq!(c.now_ns(100), 5_000);
        assert_eq!(c.now_ns(101), 5_000 + NS_PER_STEP);
        c.idle_until(101, 10); // deadline in the past: no change
        assert_eq!(c.now_ns(101), 5_000 + NS_PER_STEP);
    }

    #[test]
    fn a_clock_started_late_goes_on_from_there() {
        let mut c = EngineClock::starting_at(ClockMode::Icount, 7_000);
        assert_eq!(c.now_ns(0), 7_000);
        assert_eq!(c.now_ns(10), 7_000 + 10 * NS_PER_STEP);
        let mut r = EngineClock::starting_at(ClockMode::Realtime, 7_000);
        assert!(r.now_ns(0) >= 7_000);
        assert_eq!(r.idle_ns, 0, "realtime mode never skips idle time");
    }

    #[test]
    fn realtime_is_monotonic() {
        let mut c = EngineClock::new(ClockMode::Realtime);
        let a = c.now_ns(0);
        let b = c.now_ns(0);
        assert!(b >= a);
    }
}
