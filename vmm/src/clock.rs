//! Where device time comes from. Devices never read a clock themselves: the engine asks a
//! [`Clock`] for `now_ns` and passes it in, so the same code serves the free-running engine
//! (host time) and the recorder (virtual time derived from the instruction count).

use std::time::Instant;

/// A source of device time in nanoseconds since the VM started. Must be monotonic.
pub trait Clock {
    /// Nanoseconds of guest time elapsed since boot.
    fn now_ns(&self) -> u64;
}

/// Host monotonic time since construction, divided by a slowdown factor.
///
/// The slowdown exists for hosts whose KVM emulates guest ring 0 (PVM, ~1.5 M instructions
/// per second): a Linux timer tick there costs about 4 ms of host time, as long as the
/// 250 Hz tick period itself, so at full speed the next tick is already pending when the
/// last one returns and a process never runs a single user instruction (measured at
/// `Run /init`). Device time running 10 times slower than the host's leaves the guest
/// nine tenths of its time, as if it ran on a 15 M instructions/s machine.
#[derive(Debug, Clone, Copy)]
pub struct HostClock {
    start: Instant,
    /// Reading at `start`: non-zero for a run resumed from a snapshot.
    offset_ns: u64,
    /// Host nanoseconds per device nanosecond (at least 1).
    slowdown: u32,
}

impl HostClock {
    /// A clock reading 0 now, running `slowdown` times slower than the host's (0 counts as 1).
    pub fn new(slowdown: u32) -> Self {
        Self::resumed_at(0, slowdown)
    }

    /// A clock reading `ns` now and running on from there (a resumed snapshot), `slowdown`
    /// times slower than the host's.
    pub fn resumed_at(ns: u64, slowdown: u32) -> Self {
        Self { start: Instant::now(), offset_ns: ns, slowdown: slowdown.max(1) }
    }

    /// How many times slower than host time this clock runs.
    pub fn slowdown(&self) -> u32 {
        self.slowdown
    }

    /// Host time until this clock has advanced by `device`.
    pub fn host_duration(&self, device: std::time::Duration) -> std::time::Duration {
        device.saturating_mul(self.slowdown)
    }
}

impl Default for HostClock {
    fn default() -> Self {
        Self::new(1)
    }
}

impl HostClock {
    /// The reading at host instant `host`.
    fn reading_at(&self, host: Instant) -> u64 {
        let host_ns = host.saturating_duration_since(self.start).as_nanos() as u64;
        self.offset_ns.saturating_add(host_ns / u64::from(self.slowdown))
    }
}

impl Clock for HostClock {
    fn now_ns(&self) -> u64 {
        self.reading_at(Instant::now())
    }
}

/// Current wall-clock time in seconds since the Unix epoch, read once at boot for the RTC.
pub fn wall_clock_unix_secs() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_slowed_clock_advances_by_host_time_over_the_slowdown() {
        let clock = HostClock::resumed_at(7_000, 10);
        let later = clock.start + Duration::from_millis(40);
        assert_eq!(clock.reading_at(later), 7_000 + 4_000_000, "40 ms of host time are 4 ms of device time");
        assert_eq!(clock.host_duration(Duration::from_millis(4)), Duration::from_millis(40));
        assert_eq!(clock.reading_at(clock.start), 7_000, "a resumed clock starts at its reading");
    }

    #[test]
    fn no_slowdown_is_host_time_and_zero_means_none() {
        let clock = HostClock::new(0);
        assert_eq!(clock.slowdown(), 1);
        assert_eq!(clock.reading_at(clock.start + Duration::from_nanos(123_456)), 123_456);
    }
}
