//! The RTC's saved state.

use serde::{Deserialize, Serialize};

use super::{CivilTime, Rtc, A_UIP, B_SET, CMOS_SIZE};
use crate::persist::{exact_len, in_range, no_bits_outside, StateError};

/// Largest clock time, in seconds either side of 1970, a saved RTC may hold: far beyond
/// any the guest can set (years up to 25599) or boot with (base times are clamped to
/// 2^40 s), and small enough that no date arithmetic on it can overflow.
const MAX_EPOCH_SECS: i64 = 1 << 48;
/// Largest year a frozen clock may hold, for the same reason.
const MAX_YEAR: i64 = 1 << 31;

/// The MC146818 as saved in checkpoints and snapshots.
///
/// Its bincode encoding is frozen (see [`crate::persist`]): any change is a new version
/// type plus a conversion, never an edit of this one.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RtcState {
    /// Selected register (0..=0x7f).
    pub index: u8,
    /// CMOS RAM, always 128 bytes.
    pub ram: Vec<u8>,
    /// Register A without UIP.
    pub reg_a: u8,
    /// Register B.
    pub reg_b: u8,
    /// Clock time, in Unix seconds, at virtual time `epoch_ns`.
    pub epoch_secs: i64,
    /// Virtual time the clock was last set.
    pub epoch_ns: u64,
    /// The clock while B.SET is set: stopped and being edited.
    pub frozen: Option<RtcTime>,
    /// Update cycles since `epoch_ns` register C has reported.
    pub reported_updates: u64,
}

/// A broken-down UTC time; fields can be out of range while the guest edits a frozen clock.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RtcTime {
    /// Year.
    pub year: i64,
    /// Month (1..=12 once normalised).
    pub month: i64,
    /// Day of the month.
    pub day: i64,
    /// Hour.
    pub hour: i64,
    /// Minute.
    pub minute: i64,
    /// Second.
    pub second: i64,
}

impl Rtc {
    /// The state to save.
    pub fn state(&self) -> RtcState {
        RtcState {
            index: self.index,
            ram: self.ram.clone(),
            reg_a: self.reg_a,
            reg_b: self.reg_b,
            epoch_secs: self.epoch_secs,
            epoch_ns: self.epoch_ns,
            frozen: self.frozen.map(|t| RtcTime {
                year: t.year,
                month: t.month,
                day: t.day,
                hour: t.hour,
                minute: t.minute,
                second: t.second,
            }),
            reported_updates: self.reported_updates,
        }
    }

    /// An RTC in `state`, refused if the chip could not be in it.
    pub fn from_state(state: &RtcState) -> Result<Self, StateError> {
        in_range("RTC register index", state.index, 0, 0x7f)?;
        exact_len("RTC CMOS RAM", state.ram.len(), CMOS_SIZE)?;
        no_bits_outside("RTC register A", state.reg_a, u64::from(!A_UIP))?;
        in_range("RTC clock time (s)", state.epoch_secs, -MAX_EPOCH_SECS, MAX_EPOCH_SECS)?;
        if state.frozen.is_some() != (state.reg_b & B_SET != 0) {
            return Err(StateError::Inconsistent {
                what: "RTC".into(),
                reason: "the clock is frozen exactly while register B's SET bit is, and here it is not",
            });
        }
        let frozen = match state.frozen {
            None => None,
            Some(t) => {
                in_range("RTC frozen year", t.year, -MAX_YEAR, MAX_YEAR)?;
                for (field, value) in
                    [("month", t.month), ("day", t.day), ("hour", t.hour), ("minute", t.minute), ("second", t.second)]
                {
                    // Guest writes are one byte; normalised fields are smaller still.
                    in_range(&format!("RTC frozen {field}"), value, 0, 0xff)?;
                }
                Some(CivilTime {
                    year: t.year,
                    month: t.month,
                    day: t.day,
                    hour: t.hour,
                    minute: t.minute,
                    second: t.second,
                })
            }
        };
        Ok(Rtc {
            index: state.index,
            ram: state.ram.clone(),
            reg_a: state.reg_a,
            reg_b: state.reg_b,
            epoch_secs: state.epoch_secs,
            epoch_ns: state.epoch_ns,
            frozen,
            reported_updates: state.reported_updates,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::{DATA_PORT, INDEX_PORT};
    use super::*;

    const SEC: u64 = 1_000_000_000;

    fn set(rtc: &mut Rtc, index: u8, value: u8, now: u64) {
        rtc.write(INDEX_PORT, index, now);
        rtc.write(DATA_PORT, value, now);
    }

    fn frozen_rtc() -> Rtc {
        let mut rtc = Rtc::new(1_709_164_800);
        rtc.set_ram(0x40, 0x99);
        set(&mut rtc, 0x0b, 0x82, SEC);
        set(&mut rtc, 0x04, 0x07, 2 * SEC);
        rtc
    }

    #[test]
    fn state_round_trips_and_behaves_the_same() {
        let mut rtc = frozen_rtc();
        let state = rtc.state();
        assert!(state.frozen.is_some());
        let mut back = Rtc::from_state(&state).unwrap();
        assert_eq!(back, rtc);
        for r in [&mut rtc, &mut back] {
            set(r, 0x0b, 0x02, 3 * SEC);
            r.write(INDEX_PORT, 0x00, 9 * SEC);
        }
        assert_eq!(back.read(DATA_PORT, 9 * SEC), rtc.read(DATA_PORT, 9 * SEC));
        assert_eq!(back.state(), rtc.state());
    }

    #[test]
    fn impossible_clocks_are_refused() {
        let good = frozen_rtc().state();
        let refuse = |change: fn(&mut RtcState), expected: &str| {
            let mut s = good.clone();
            change(&mut s);
            let err = Rtc::from_state(&s).unwrap_err().to_string();
            assert!(err.contains(expected), "{err}");
        };
        refuse(|s| s.ram.truncate(100), "RTC CMOS RAM holds 100 entries instead of 128");
        refuse(|s| s.index = 0x80, "RTC register index is 128");
        refuse(|s| s.reg_a = 0x80, "RTC register A is 0x80");
        refuse(|s| s.reg_b = 0x02, "frozen exactly while register B's SET bit is");
        refuse(|s| s.epoch_secs = i64::MIN, "RTC clock time (s) is");
        refuse(
            |s| {
                if let Some(t) = &mut s.frozen {
                    t.year = i64::MAX;
                }
            },
            "RTC frozen year",
        );
        refuse(
            |s| {
                if let Some(t) = &mut s.frozen {
                    t.hour = -1;
                }
            },
            "RTC frozen hour is -1",
        );
    }
}
