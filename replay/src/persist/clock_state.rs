//! The engine clock's saved state.

use serde::{Deserialize, Serialize};

use super::StateError;
use crate::clock::{ClockMode, EngineClock};

/// The clock as saved in every trace checkpoint. The host instant realtime mode counts
/// from is not saved: a restored clock starts counting again from `last_ns`.
///
/// Its bincode encoding is frozen (see [`crate::persist`]), and with it that of
/// [`ClockMode`] (which trace headers also hold): any change is a new version type plus a
/// conversion, never an edit of this one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EngineClockState {
    /// Mode.
    pub mode: ClockMode,
    /// Time skipped by HLT (icount mode).
    pub idle_ns: u64,
    /// Last value returned.
    pub last_ns: u64,
    /// Host time already elapsed when realtime counting last started.
    pub origin_ns: u64,
}

impl EngineClock {
    /// The state to save.
    pub fn state(&self) -> EngineClockState {
        EngineClockState { mode: self.mode, idle_ns: self.idle_ns, last_ns: self.last_ns, origin_ns: self.origin_ns }
    }

    /// A clock in `state`, refused when its fields contradict its mode: only icount mode
    /// skips idle time, only realtime mode counts from a host origin, and realtime never
    /// returned less than its origin.
    pub fn from_state(state: &EngineClockState) -> Result<Self, StateError> {
        let refuse = |reason| Err(StateError::Clock { mode: state.mode, reason });
        match state.mode {
            ClockMode::Icount if state.origin_ns != 0 => return refuse("a host-time origin is set"),
            ClockMode::Realtime if state.idle_ns != 0 => return refuse("HLT skipped time"),
            ClockMode::Realtime if state.last_ns < state.origin_ns => return refuse("time went back past its origin"),
            _ => {}
        }
        let mut clock = EngineClock::new(state.mode);
        clock.idle_ns = state.idle_ns;
        clock.last_ns = state.last_ns;
        clock.origin_ns = state.origin_ns;
        Ok(clock)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_running_clock_round_trips_and_goes_on_from_where_it_was() {
        let mut clock = EngineClock::new(ClockMode::Icount);
        clock.idle_until(100, 50_000);
        let state = clock.state();
        let mut back = EngineClock::from_state(&state).unwrap();
        assert_eq!(back.state(), state);
        assert_eq!(back.now_ns(200), clock.now_ns(200));

        let mut realtime = EngineClock::new(ClockMode::Realtime);
        let before = realtime.now_ns(0);
        let mut back = EngineClock::from_state(&realtime.state()).unwrap();
        assert!(back.now_ns(0) >= before);
    }

    #[test]
    fn fields_contradicting_the_mode_are_refused() {
        let refuse = |state: EngineClockState, expected: &str| {
            let err = EngineClock::from_state(&state).map(|_| ()).unwrap_err().to_string();
            assert!(err.contains(expected), "{err}");
        };
        let icount = EngineClockState { mode: ClockMode::Icount, idle_ns: 5, last_ns: 10, origin_ns: 0 };
        refuse(EngineClockState { origin_ns: 3, ..icount }, "clock (icount mode): a host-time origin is set");
        let realtime = EngineClockState { mode: ClockMode::Realtime, idle_ns: 0, last_ns: 10, origin_ns: 4 };
        EngineClock::from_state(&realtime).unwrap();
        refuse(EngineClockState { idle_ns: 1, ..realtime }, "clock (realtime mode): HLT skipped time");
        refuse(EngineClockState { origin_ns: 11, ..realtime }, "time went back past its origin");
    }
}
