//! Where device time comes from. Devices never read a clock themselves: the engine asks a
//! [`Clock`] for `now_ns` and passes it in, so the same code serves the free-running engine
//! (host time) and the recorder (virtual time derived from the instruction count).

use std::time::Instant;

/// A source of device time in nanoseconds since the VM started. Must be monotonic.
pub trait Clock {
    /// Nanoseconds of guest time elapsed since boot.
    fn now_ns(&self) -> u64;
}

/// Host monotonic time since construction.
#[derive(Debug, Clone, Copy)]
pub struct HostClock {
    start: Instant,
    /// Reading at `start`: non-zero for a run resumed from a snapshot.
    offset_ns: u64,
}

impl HostClock {
    /// A clock reading 0 now.
    pub fn new() -> Self {
        Self::resumed_at(0)
    }

    /// A clock reading `ns` now and running on from there (a resumed snapshot).
    pub fn resumed_at(ns: u64) -> Self {
        Self { start: Instant::now(), offset_ns: ns }
    }
}

impl Default for HostClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for HostClock {
    fn now_ns(&self) -> u64 {
        self.offset_ns.saturating_add(self.start.elapsed().as_nanos() as u64)
    }
}

/// Current wall-clock time in seconds since the Unix epoch, read once at boot for the RTC.
pub fn wall_clock_unix_secs() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}
