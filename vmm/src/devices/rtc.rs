//! Motorola MC146818 CMOS real-time clock: index port 0x70 (bit 7, the PC's NMI-disable bit,
//! is ignored), data port 0x71.
//!
//! The clock never reads the host: the time is `base_unix_secs` (the wall-clock time at VM
//! boot, read once and logged by the caller) plus whole virtual seconds of `now_ns`. Dates are
//! computed with our own proleptic-Gregorian civil-from-days conversion, in UTC.
//!
//! * Time registers 0, 2, 4, 6, 7, 8, 9 and the century register 0x32 are presented in the
//!   format register B selects now (BCD or binary, 24- or 12-hour with bit 7 = PM). Changing
//!   the format bits re-presents the same time rather than reinterpreting stored bytes.
//! * Setting B.SET freezes the clock; guest writes then edit the frozen date and time and read
//!   back as written; clearing SET restarts the clock from it at that virtual instant, so the
//!   next second ticks one virtual second later. Writes to time registers without SET take
//!   effect at once (normalised, e.g. 31 February becomes 3 March), keeping the sub-second
//!   phase. The day-of-week register is always computed from the date; writes to it are
//!   ignored.
//! * Register A: bits 0..=6 as written; UIP (bit 7) is set during the last 244 µs of each
//!   clock second (never while SET is set). The divider-chain bits do not stop the clock.
//! * Register C reports UF (bit 4) once an update cycle has completed since C was last read;
//!   register D reads 0x80 (valid RAM and time).
//! * No periodic, alarm or update-ended interrupts are raised (IRQ8 is never asserted), so
//!   C's IRQF, PF and AF stay 0. The alarm registers (1, 3, 5) are plain CMOS RAM.
//! * All other indices are 128 bytes of CMOS RAM: writes stored, reads returned.

mod state;

pub use state::{RtcState, RtcTime};

/// Index port (bit 7 = NMI disable, ignored).
pub const INDEX_PORT: u16 = 0x70;
/// Data port.
pub const DATA_PORT: u16 = 0x71;
/// Size of CMOS RAM, including the clock's registers.
pub const CMOS_SIZE: usize = 128;

const REG_SECONDS: u8 = 0x00;
const REG_MINUTES: u8 = 0x02;
const REG_HOURS: u8 = 0x04;
const REG_DAY_OF_WEEK: u8 = 0x06;
const REG_DAY_OF_MONTH: u8 = 0x07;
const REG_MONTH: u8 = 0x08;
const REG_YEAR: u8 = 0x09;
const REG_A: u8 = 0x0a;
const REG_B: u8 = 0x0b;
const REG_C: u8 = 0x0c;
const REG_D: u8 = 0x0d;
const REG_CENTURY: u8 = 0x32;

const A_UIP: u8 = 0x80;
const B_SET: u8 = 0x80;
const B_UIE: u8 = 0x10;
const B_BINARY: u8 = 0x04;
const B_24_HOUR: u8 = 0x02;
const C_UF: u8 = 0x10;
const D_VRT: u8 = 0x80;
const HOUR_PM: u8 = 0x80;

const NS_PER_SEC: u64 = 1_000_000_000;
/// UIP is set this long before each second's update.
const UIP_LEAD_NS: u64 = 244_000;
/// Base times are clamped here (about year 36812) so date arithmetic cannot overflow.
const MAX_BASE_SECS: u64 = 1 << 40;

/// A broken-down UTC date and time. Fields may be out of range while the guest edits a frozen
/// clock; conversion to seconds normalises them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct CivilTime {
    year: i64,
    month: i64,
    day: i64,
    hour: i64,
    minute: i64,
    second: i64,
}

/// Days since 1970-01-01 → (year, month 1..=12, day 1..=31), proleptic Gregorian.
pub fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// (year, month 1..=12, day) → days since 1970-01-01; `day` may be out of range.
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let yoe = year.rem_euclid(400);
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

impl CivilTime {
    fn from_unix(secs: i64) -> Self {
        let (year, month, day) = civil_from_days(secs.div_euclid(86_400));
        let in_day = secs.rem_euclid(86_400);
        CivilTime { year, month, day, hour: in_day / 3_600, minute: in_day / 60 % 60, second: in_day % 60 }
    }

    fn to_unix(self) -> i64 {
        // Fold an out-of-range month into the year so the day arithmetic stays valid.
        let year = self.year + (self.month - 1).div_euclid(12);
        let month = (self.month - 1).rem_euclid(12) + 1;
        days_from_civil(year, month, self.day) * 86_400 + self.hour * 3_600 + self.minute * 60 + self.second
    }

    /// 1 = Sunday .. 7 = Saturday, as the MC146818 counts.
    fn day_of_week(self) -> i64 {
        let days = self.to_unix().div_euclid(86_400);
        // 1970-01-01 was a Thursday.
        (days + 4).rem_euclid(7) + 1
    }
}

/// The CMOS RTC.
#[derive(Clone, Debug, PartialEq)]
pub struct Rtc {
    /// Selected register (port 0x70 with the NMI bit stripped).
    index: u8,
    /// CMOS RAM; the clock registers' slots are unused. Always [`CMOS_SIZE`] bytes.
    ram: Vec<u8>,
    reg_a: u8,
    reg_b: u8,
    /// Clock time, in Unix seconds, at virtual time `epoch_ns`.
    epoch_secs: i64,
    epoch_ns: u64,
    /// The clock while B.SET is set (stopped and being edited).
    frozen: Option<CivilTime>,
    /// Update cycles since `epoch_ns` that register C has already reported.
    reported_updates: u64,
}

impl Rtc {
    /// `base_unix_secs` is the wall-clock time at VM boot (the caller reads the host clock
    /// once and logs it).
    pub fn new(base_unix_secs: u64) -> Self {
        Rtc {
            index: 0,
            ram: vec![0; CMOS_SIZE],
            reg_a: 0x26,
            reg_b: B_24_HOUR,
            epoch_secs: base_unix_secs.min(MAX_BASE_SECS) as i64,
            epoch_ns: 0,
            frozen: None,
            reported_updates: 0,
        }
    }

    /// Guest read: 0x71 returns the selected register; 0x70 is write-only and, like unknown
    /// ports, reads 0xff.
    pub fn read(&mut self, port: u16, now_ns: u64) -> u8 {
        if port != DATA_PORT {
            return 0xff;
        }
        let now = self.now(now_ns);
        match self.index {
            REG_SECONDS => self.encode(now.second),
            REG_MINUTES => self.encode(now.minute),
            REG_HOURS => self.encode_hour(now.hour),
            REG_DAY_OF_WEEK => self.encode(now.day_of_week()),
            REG_DAY_OF_MONTH => self.encode(now.day),
            REG_MONTH => self.encode(now.month),
            REG_YEAR => self.encode(now.year.rem_euclid(100)),
            REG_CENTURY => self.encode(now.year.div_euclid(100)),
            REG_A => self.reg_a | if self.update_in_progress(now_ns) { A_UIP } else { 0 },
            REG_B => self.reg_b,
            REG_C => {
                let updates = self.updates(now_ns);
                let uf = self.frozen.is_none() && updates > self.reported_updates;
                self.reported_updates = updates;
                if uf {
                    C_UF
                } else {
                    0
                }
            }
            REG_D => D_VRT,
            index => self.ram(index),
        }
    }

    /// Guest write: 0x70 selects a register, 0x71 writes it; other ports are ignored.
    pub fn write(&mut self, port: u16, value: u8, now_ns: u64) {
        match port {
            INDEX_PORT => self.index = value & 0x7f,
            DATA_PORT => self.write_register(value, now_ns),
            _ => {}
        }
    }

    /// A byte of CMOS RAM as stored (for the board to inspect).
    pub fn ram(&self, index: u8) -> u8 {
        self.ram.get(usize::from(index)).copied().unwrap_or(0)
    }

    /// Store a byte of CMOS RAM (for the board to seed, e.g. memory-size bytes).
    pub fn set_ram(&mut self, index: u8, value: u8) {
        if let Some(byte) = self.ram.get_mut(usize::from(index)) {
            *byte = value;
        }
    }

    fn write_register(&mut self, value: u8, now_ns: u64) {
        match self.index {
            REG_SECONDS | REG_MINUTES | REG_HOURS | REG_DAY_OF_MONTH | REG_MONTH | REG_YEAR | REG_CENTURY => {
                self.write_time(self.index, value, now_ns)
            }
            REG_DAY_OF_WEEK => {}
            REG_A => self.reg_a = value & !A_UIP,
            REG_B => self.write_b(value, now_ns),
            REG_C | REG_D => {}
            index => self.set_ram(index, value),
        }
    }

    fn write_b(&mut self, mut value: u8, now_ns: u64) {
        let was_set = self.reg_b & B_SET != 0;
        let set = value & B_SET != 0;
        if set {
            // Setting SET clears UIE (datasheet).
            value &= !B_UIE;
            if !was_set {
                self.frozen = Some(self.now(now_ns));
            }
        } else if let Some(frozen) = self.frozen.take() {
            self.epoch_secs = frozen.to_unix();
            self.epoch_ns = now_ns;
            self.reported_updates = 0;
        }
        self.reg_b = value;
    }

    fn write_time(&mut self, index: u8, value: u8, now_ns: u64) {
        let mut t = self.now(now_ns);
        let v = self.decode(value);
        match index {
            REG_SECONDS => t.second = v,
            REG_MINUTES => t.minute = v,
            REG_HOURS => t.hour = self.decode_hour(value),
            REG_DAY_OF_MONTH => t.day = v,
            REG_MONTH => t.month = v,
            REG_YEAR => t.year = t.year.div_euclid(100) * 100 + v,
            _ => t.year = v * 100 + t.year.rem_euclid(100),
        }
        match &mut self.frozen {
            Some(frozen) => *frozen = t,
            None => {
                // Keep the sub-second phase: only the second count changes.
                let elapsed = self.updates(now_ns) as i64;
                self.epoch_secs = t.to_unix() - elapsed;
            }
        }
    }

    /// Whole seconds the clock has run since `epoch_ns`.
    fn updates(&self, now_ns: u64) -> u64 {
        now_ns.saturating_sub(self.epoch_ns) / NS_PER_SEC
    }

    fn now(&self, now_ns: u64) -> CivilTime {
        self.frozen.unwrap_or_else(|| {
            let secs = self.epoch_secs.saturating_add(self.updates(now_ns) as i64);
            CivilTime::from_unix(secs)
        })
    }

    fn update_in_progress(&self, now_ns: u64) -> bool {
        self.frozen.is_none() && now_ns.saturating_sub(self.epoch_ns) % NS_PER_SEC >= NS_PER_SEC - UIP_LEAD_NS
    }

    fn binary(&self) -> bool {
        self.reg_b & B_BINARY != 0
    }

    fn encode(&self, value: i64) -> u8 {
        let v = value.rem_euclid(100) as u8;
        if self.binary() {
            v
        } else {
            ((v / 10) << 4) | (v % 10)
        }
    }

    fn decode(&self, value: u8) -> i64 {
        if self.binary() {
            i64::from(value)
        } else {
            i64::from(value >> 4) * 10 + i64::from(value & 0x0f)
        }
    }

    fn encode_hour(&self, hour: i64) -> u8 {
        if self.reg_b & B_24_HOUR != 0 {
            return self.encode(hour);
        }
        let h12 = match hour.rem_euclid(12) {
            0 => 12,
            h => h,
        };
        let pm = if hour.rem_euclid(24) >= 12 { HOUR_PM } else { 0 };
        self.encode(h12) | pm
    }

    fn decode_hour(&self, value: u8) -> i64 {
        if self.reg_b & B_24_HOUR != 0 {
            return self.decode(value);
        }
        let h = self.decode(value & !HOUR_PM) % 12;
        if value & HOUR_PM != 0 {
            h + 12
        } else {
            h
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: u64 = NS_PER_SEC;
    const Y2K: u64 = 946_684_800; // 2000-01-01 00:00:00, a Saturday
    const LEAP_DAY_2024: u64 = 1_709_164_800; // 2024-02-29 00:00:00, a Thursday
    const Y2038: u64 = 2_147_483_647; // 2038-01-19 03:14:07, a Tuesday

    fn reg(rtc: &mut Rtc, index: u8, now: u64) -> u8 {
        rtc.write(INDEX_PORT, index, now);
        rtc.read(DATA_PORT, now)
    }

    fn set_reg(rtc: &mut Rtc, index: u8, value: u8, now: u64) {
        rtc.write(INDEX_PORT, index, now);
        rtc.write(DATA_PORT, value, now);
    }

    /// (century, year, month, day, dow, hours, minutes, seconds) as the guest reads them.
    fn snapshot(rtc: &mut Rtc, now: u64) -> [u8; 8] {
        [REG_CENTURY, 9, 8, 7, 6, 4, 2, 0].map(|i| reg(rtc, i, now))
    }

    #[test]
    fn civil_conversion_round_trips() {
        for days in (-800_000..800_000).step_by(997) {
            let (y, m, d) = civil_from_days(days);
            assert!((1..=12).contains(&m) && (1..=31).contains(&d));
            assert_eq!(days_from_civil(y, m, d), days);
        }
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(19_723), (2024, 1, 1));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        assert_eq!(days_from_civil(2000, 3, 1) - days_from_civil(2000, 2, 28), 2);
        assert_eq!(days_from_civil(1900, 3, 1) - days_from_civil(1900, 2, 28), 1);
    }

    #[test]
    fn y2k_in_bcd() {
        let mut rtc = Rtc::new(Y2K);
        assert_eq!(snapshot(&mut rtc, 0), [0x20, 0x00, 0x01, 0x01, 7, 0x00, 0x00, 0x00]);
    }

    #[test]
    fn leap_day_in_bcd_and_binary() {
        let mut rtc = Rtc::new(LEAP_DAY_2024 + 12 * 3600 + 34 * 60 + 56);
        assert_eq!(snapshot(&mut rtc, 0), [0x20, 0x24, 0x02, 0x29, 5, 0x12, 0x34, 0x56]);
        set_reg(&mut rtc, REG_B, B_24_HOUR | B_BINARY, 0);
        assert_eq!(snapshot(&mut rtc, 0), [20, 24, 2, 29, 5, 12, 34, 56]);
    }

    #[test]
    fn y2038_in_bcd_and_binary() {
        let mut rtc = Rtc::new(Y2038);
        assert_eq!(snapshot(&mut rtc, 0), [0x20, 0x38, 0x01, 0x19, 3, 0x03, 0x14, 0x07]);
        set_reg(&mut rtc, REG_B, B_24_HOUR | B_BINARY, 0);
        // One second later the 32-bit time_t overflows; the RTC does not care.
        assert_eq!(snapshot(&mut rtc, SEC), [20, 38, 1, 19, 3, 3, 14, 8]);
    }

    #[test]
    fn twelve_hour_mode() {
        let hours = |base: u64, b: u8| {
            let mut rtc = Rtc::new(base);
            set_reg(&mut rtc, REG_B, b, 0);
            reg(&mut rtc, REG_HOURS, 0)
        };
        assert_eq!(hours(Y2K, 0), 0x12, "midnight is 12 AM");
        assert_eq!(hours(Y2K + 3600, 0), 0x01);
        assert_eq!(hours(Y2K + 12 * 3600, 0), 0x92, "noon is 12 PM");
        assert_eq!(hours(Y2K + 15 * 3600, 0), 0x83);
        assert_eq!(hours(Y2K + 23 * 3600, B_BINARY), 0x80 | 11);
        assert_eq!(hours(Y2K + 23 * 3600, B_24_HOUR), 0x23);
    }

    #[test]
    fn advancing_time_rolls_fields() {
        // 2023-12-31 23:59:58
        let mut rtc = Rtc::new(1_704_067_198);
        assert_eq!(snapshot(&mut rtc, 0), [0x20, 0x23, 0x12, 0x31, 1, 0x23, 0x59, 0x58]);
        assert_eq!(snapshot(&mut rtc, 2 * SEC - 1)[7], 0x59);
        assert_eq!(snapshot(&mut rtc, 2 * SEC), [0x20, 0x24, 0x01, 0x01, 2, 0x00, 0x00, 0x00]);
        assert_eq!(snapshot(&mut rtc, 62 * SEC)[5..], [0x00, 0x01, 0x00]);
        assert_eq!(snapshot(&mut rtc, (2 + 86_400 * 59) * SEC)[1..5], [0x24, 0x02, 0x29, 5]);
    }

    #[test]
    fn uip_is_set_in_last_244us_of_each_second() {
        let mut rtc = Rtc::new(Y2K);
        let uip = |rtc: &mut Rtc, now| reg(rtc, REG_A, now) & A_UIP != 0;
        assert!(!uip(&mut rtc, 0));
        assert!(!uip(&mut rtc, SEC - 244_001));
        assert!(uip(&mut rtc, SEC - 244_000));
        assert!(uip(&mut rtc, SEC - 1));
        assert!(!uip(&mut rtc, SEC));
        assert!(uip(&mut rtc, 5 * SEC - 100));
        assert_eq!(reg(&mut rtc, REG_A, 0), 0x26);
        set_reg(&mut rtc, REG_A, 0xff, 0);
        assert_eq!(reg(&mut rtc, REG_A, 0), 0x7f);
    }

    #[test]
    fn set_bit_freezes_and_rebases() {
        let mut rtc = Rtc::new(Y2K);
        let t = 10 * SEC + 400_000_000;
        set_reg(&mut rtc, REG_B, B_SET | B_24_HOUR, t);
        assert_eq!(reg(&mut rtc, REG_SECONDS, t + 5 * SEC), 0x10, "frozen");
        assert_eq!(reg(&mut rtc, REG_A, t + SEC - 1) & A_UIP, 0, "no UIP while SET");
        // Linux's order: seconds .. year; 2024-03-31 via an intermediate 2000-02-31.
        for (index, value) in [(0u8, 0x30u8), (2, 0x45), (4, 0x21), (7, 0x31), (8, 0x03), (9, 0x24)] {
            set_reg(&mut rtc, index, value, t + SEC);
        }
        assert_eq!(reg(&mut rtc, REG_DAY_OF_MONTH, t + 2 * SEC), 0x31, "reads back as written");
        let resume = t + 3 * SEC;
        set_reg(&mut rtc, REG_B, B_24_HOUR, resume);
        assert_eq!(snapshot(&mut rtc, resume), [0x20, 0x24, 0x03, 0x31, 1, 0x21, 0x45, 0x30]);
        assert_eq!(reg(&mut rtc, REG_SECONDS, resume + SEC - 1), 0x30);
        assert_eq!(reg(&mut rtc, REG_SECONDS, resume + SEC), 0x31);
        assert!(reg(&mut rtc, REG_A, resume + SEC - 1) & A_UIP != 0, "UIP phase follows resume");
    }

    #[test]
    fn set_clears_uie_and_century_write() {
        let mut rtc = Rtc::new(Y2K);
        set_reg(&mut rtc, REG_B, B_SET | B_UIE | B_24_HOUR | B_BINARY, 0);
        assert_eq!(reg(&mut rtc, REG_B, 0), B_SET | B_24_HOUR | B_BINARY);
        set_reg(&mut rtc, REG_CENTURY, 19, 0);
        set_reg(&mut rtc, REG_YEAR, 99, 0);
        set_reg(&mut rtc, REG_B, B_24_HOUR | B_BINARY, 0);
        assert_eq!(snapshot(&mut rtc, 0)[..3], [19, 99, 1]);
    }

    #[test]
    fn write_without_set_applies_immediately_keeping_phase() {
        let mut rtc = Rtc::new(Y2K);
        let t = 3 * SEC + 500_000_000;
        set_reg(&mut rtc, REG_MINUTES, 0x42, t);
        assert_eq!(snapshot(&mut rtc, t)[5..], [0x00, 0x42, 0x03]);
        assert_eq!(reg(&mut rtc, REG_SECONDS, 4 * SEC - 1), 0x03);
        assert_eq!(reg(&mut rtc, REG_SECONDS, 4 * SEC), 0x04);
        set_reg(&mut rtc, REG_DAY_OF_WEEK, 3, t);
        assert_eq!(reg(&mut rtc, REG_DAY_OF_WEEK, t), 7, "day of week follows the date");
    }

    #[test]
    fn registers_c_and_d() {
        let mut rtc = Rtc::new(Y2K);
        assert_eq!(reg(&mut rtc, REG_D, 0), 0x80);
        assert_eq!(reg(&mut rtc, REG_C, 0), 0);
        assert_eq!(reg(&mut rtc, REG_C, SEC - 1), 0);
        assert_eq!(reg(&mut rtc, REG_C, SEC), C_UF);
        assert_eq!(reg(&mut rtc, REG_C, SEC), 0, "reading C clears UF");
        set_reg(&mut rtc, REG_C, 0xff, SEC);
        set_reg(&mut rtc, REG_D, 0x00, SEC);
        assert_eq!(reg(&mut rtc, REG_D, SEC), 0x80);
        assert_eq!(reg(&mut rtc, REG_C, 3 * SEC), C_UF);
    }

    #[test]
    fn cmos_ram_round_trips() {
        let mut rtc = Rtc::new(Y2K);
        for index in (0x0e..0x80u8).filter(|&i| i != REG_CENTURY) {
            set_reg(&mut rtc, index, index ^ 0xa5, 0);
        }
        for index in (0x0e..0x80u8).filter(|&i| i != REG_CENTURY) {
            assert_eq!(reg(&mut rtc, index, 0), index ^ 0xa5);
        }
        // Alarm registers are RAM.
        set_reg(&mut rtc, 0x01, 0x33, 0);
        assert_eq!(reg(&mut rtc, 0x01, 0), 0x33);
        rtc.set_ram(0x34, 0x12);
        assert_eq!(rtc.ram(0x34), 0x12);
        assert_eq!(reg(&mut rtc, 0x34, 0), 0x12);
    }

    #[test]
    fn nmi_bit_is_ignored() {
        let mut rtc = Rtc::new(Y2K + 17);
        assert_eq!(reg(&mut rtc, 0x80, 0), 0x17);
        set_reg(&mut rtc, 0x80 | 0x50, 0x99, 0);
        assert_eq!(reg(&mut rtc, 0x50, 0), 0x99);
    }

    #[test]
    fn unknown_ports() {
        let mut rtc = Rtc::new(Y2K);
        let before = rtc.clone();
        assert_eq!(rtc.read(INDEX_PORT, 0), 0xff);
        assert_eq!(rtc.read(0x72, 0), 0xff);
        rtc.write(0x72, 0x12, 0);
        assert_eq!(rtc, before);
    }

    #[test]
    fn no_panic_on_arbitrary_sequences() {
        for base in [0, Y2K, u64::MAX] {
            let mut rtc = Rtc::new(base);
            let mut x: u32 = 0x1357_9bdf;
            let mut now = 0u64;
            for _ in 0..50_000 {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                now = now.saturating_add(u64::from(x >> 12));
                let value = (x >> 4) as u8;
                match x % 4 {
                    0 => rtc.write(INDEX_PORT, value, now),
                    1 => rtc.write(DATA_PORT, value, now),
                    _ => {
                        rtc.read(DATA_PORT, now);
                    }
                }
            }
            rtc.read(DATA_PORT, u64::MAX);
        }
    }

    #[test]
    fn clone_behaves_identically() {
        let mut rtc = Rtc::new(LEAP_DAY_2024);
        set_reg(&mut rtc, REG_B, B_SET | B_24_HOUR, SEC);
        set_reg(&mut rtc, REG_HOURS, 0x07, SEC);
        let mut copy = rtc.clone();
        assert_eq!(copy, rtc);
        for dev in [&mut rtc, &mut copy] {
            set_reg(dev, REG_B, B_24_HOUR, 2 * SEC);
        }
        assert_eq!(snapshot(&mut rtc, 9 * SEC), snapshot(&mut copy, 9 * SEC));
        assert_eq!(rtc, copy);
    }
}
