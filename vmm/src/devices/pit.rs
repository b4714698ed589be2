//! Intel 8254 programmable interval timer (ports 0x40..=0x43) plus the PC's port 0x61
//! (channel 2 gate, speaker data, OUT2 and the refresh toggle).
//!
//! # Time model
//! The PIT has no clock of its own: every call that can observe time takes `now_ns`, virtual
//! nanoseconds since VM start, and the model is a pure function of the call sequence.
//! Nanoseconds become input-clock ticks with exact integer math: `d` nanoseconds contain
//! `floor(d * PIT_HZ / 1e9)` ticks (u128 intermediate), and the `k`-th tick after an instant
//! happens `ceil(k * 1e9 / PIT_HZ)` nanoseconds after it.
//!
//! **Phase.** A counter's phase is the virtual time at which its count was loaded: writing the
//! count (the last byte of it) at `t` loads the counting element at `t`, and tick `k` of that
//! count happens at `t + ceil(k * 1e9 / PIT_HZ)`. (Real hardware loads on the next input-clock
//! edge and only then starts decrementing; the model omits that one-tick load delay.)
//! When channel 2's gate stops counting (modes 0 and 4) the ticks counted so far are kept and
//! counting resumes with a new phase at the time the gate rises again.
//!
//! # Modes
//! * 0 (interrupt on terminal count): OUT low on load, high after N ticks; the count keeps
//!   decrementing through 0 to 0xffff as on real hardware. One rising edge.
//! * 2 (rate generator): OUT high, low for the one tick in which the count is 1, then reload.
//!   Rising edges every N ticks. A new count written while counting takes effect at the end of
//!   the current period, as on real hardware.
//! * 3 (square wave): OUT high for ceil(N/2) ticks, low for floor(N/2); the count steps by 2.
//!   Rising edges every N ticks. A new count takes effect at the end of the current period
//!   (real hardware: at the end of the current half-cycle).
//! * 1, 5 (hardware-triggered one-shot / strobe) start on a rising gate, which only channel 2
//!   has; 4 (software strobe) pulses OUT low for one tick after N ticks, so its rising edge
//!   is at N + 1. These are approximations (no load delay) but never panic.
//! * Modes 2 and 3 require N >= 2; N = 1 is illegal on real hardware and acts as 2 here.
//! * A reload value of 0 means 65536 (0x10000 reads back as 0).
//! * In lobyte/hibyte access a count takes effect when its high byte is written; the real
//!   chip's "writing the first byte of a mode-0 count stops counting" is not modelled.
//! * BCD counting is not supported: the BCD bit is stored and reported in the status byte but
//!   the counter always counts in binary.
//!
//! # IRQ0
//! Channel 0's OUT is wired to IRQ0. [`Pit::poll_irq0`] counts rising edges produced by
//! counting (terminal count, period boundaries). The OUT transition forced by writing a
//! control word (e.g. mode 0 → mode 2 makes OUT go high) is deliberately not counted, so
//! programming the timer never injects a spurious tick.
//!
//! # Power-on
//! Every channel is as if a mode-0 control word had been written and no count loaded: OUT low,
//! nothing counting, no IRQ0 deadline. ttvm boots without a BIOS, and a silent timer until the
//! guest programs it is the least surprising state.

mod state;

pub use state::{
    PitAccess, PitChannelState, PitCounterState, PitCountingState, PitIrq0State, PitLatchedCount, PitStagedReload,
    PitState,
};

/// Input clock of the 8254 on a PC, in Hz.
pub const PIT_HZ: u64 = 1_193_182;

/// Data port of channel 0 (IRQ0).
pub const CHANNEL0_PORT: u16 = 0x40;
/// Data port of channel 1 (historically DRAM refresh).
pub const CHANNEL1_PORT: u16 = 0x41;
/// Data port of channel 2 (speaker, gated by port 0x61 bit 0).
pub const CHANNEL2_PORT: u16 = 0x42;
/// Mode/command register.
pub const COMMAND_PORT: u16 = 0x43;

const NS_PER_SEC: u128 = 1_000_000_000;
/// Port 0x61 bit 4 toggles every this many PIT ticks (15.085 µs, the PC's refresh period).
const REFRESH_TICKS: u64 = 18;

/// Whole input-clock ticks in `ns` nanoseconds.
fn ns_to_ticks(ns: u64) -> u64 {
    // The quotient is smaller than `ns`, so it always fits in a u64.
    ((ns as u128 * PIT_HZ as u128) / NS_PER_SEC) as u64
}

/// Nanoseconds until the `ticks`-th tick (the smallest `d` with `ns_to_ticks(d) >= ticks`).
fn ticks_to_ns_ceil(ticks: u64) -> u128 {
    (ticks as u128 * NS_PER_SEC).div_ceil(PIT_HZ as u128)
}

/// RW field of a control word: which bytes of the count a data-port access moves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Access {
    LowByte,
    HighByte,
    Word,
}

impl Access {
    fn from_rw(rw: u8) -> Self {
        match rw & 3 {
            1 => Access::LowByte,
            2 => Access::HighByte,
            _ => Access::Word,
        }
    }

    fn rw_bits(self) -> u8 {
        match self {
            Access::LowByte => 1,
            Access::HighByte => 2,
            Access::Word => 3,
        }
    }
}

/// A count to be loaded at a period boundary (modes 2 and 3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct StagedReload {
    reload: u32,
    /// Effective tick at which it replaces the current reload value.
    at_tick: u64,
}

/// A counting element that has been loaded.
///
/// "Effective ticks" are the ticks this counter has counted since its load: ticks while the
/// gate stopped counting are not included.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Counter {
    /// Count the current cycle started from (1..=65536).
    reload: u32,
    /// Start of the current stretch of counting (the phase).
    anchor_ns: u64,
    /// Effective ticks counted before `anchor_ns`.
    ticks_at_anchor: u64,
    /// Whether ticks accrue after `anchor_ns` (false while a low gate stops counting).
    running: bool,
    /// Effective tick at which `reload` was loaded.
    cycle_start: u64,
    staged: Option<StagedReload>,
}

impl Counter {
    fn fresh(reload: u32, now_ns: u64, running: bool) -> Self {
        Counter { reload, anchor_ns: now_ns, ticks_at_anchor: 0, running, cycle_start: 0, staged: None }
    }

    fn effective_ticks(&self, now_ns: u64) -> u64 {
        let since = if self.running { ns_to_ticks(now_ns.saturating_sub(self.anchor_ns)) } else { 0 };
        self.ticks_at_anchor.saturating_add(since)
    }

    /// The reload value in force at effective tick `e`, and the ticks into it.
    fn resolve(&self, e: u64) -> (u64, u64) {
        match self.staged {
            Some(s) if e >= s.at_tick => (u64::from(s.reload), e - s.at_tick),
            _ => (u64::from(self.reload), e.saturating_sub(self.cycle_start)),
        }
    }

    /// Make a staged reload whose boundary is at or before `e` the current one.
    fn settle(&mut self, e: u64) {
        if let Some(s) = self.staged {
            if e >= s.at_tick {
                self.reload = s.reload;
                self.cycle_start = s.at_tick;
                self.staged = None;
            }
        }
    }

    /// Rising OUT edges at effective ticks in (e1, e2].
    fn edges(&self, mode: u8, e1: u64, e2: u64) -> u64 {
        if e2 <= e1 {
            return 0;
        }
        let cs = self.cycle_start;
        let old = u64::from(self.reload);
        match self.staged {
            Some(s) => {
                let mut n = 0;
                if e1 < s.at_tick {
                    let end = e2.min(s.at_tick);
                    n += seg_edges(mode, old, e1.saturating_sub(cs), end.saturating_sub(cs));
                }
                if e2 > s.at_tick {
                    let new = u64::from(s.reload);
                    n += seg_edges(mode, new, e1.max(s.at_tick) - s.at_tick, e2 - s.at_tick);
                }
                n
            }
            None => seg_edges(mode, old, e1.saturating_sub(cs), e2.saturating_sub(cs)),
        }
    }

    /// The first effective tick after `e` with a rising OUT edge.
    fn next_edge(&self, mode: u8, e: u64) -> Option<u64> {
        let cs = self.cycle_start;
        match self.staged {
            Some(s) if e >= s.at_tick => {
                seg_next_edge(mode, u64::from(s.reload), e - s.at_tick).and_then(|r| s.at_tick.checked_add(r))
            }
            _ => seg_next_edge(mode, u64::from(self.reload), e.saturating_sub(cs)).and_then(|r| cs.checked_add(r)),
        }
    }

    /// Virtual time of effective tick `k` (which must not have happened yet).
    fn time_of_tick(&self, k: u64) -> Option<u64> {
        if !self.running {
            return None;
        }
        let since = k.checked_sub(self.ticks_at_anchor)?;
        let t = self.anchor_ns as u128 + ticks_to_ns_ceil(since);
        u64::try_from(t).ok()
    }
}

/// Period of modes 2 and 3 (a count of 1 is illegal there and acts as 2).
fn period(n: u64) -> u64 {
    n.max(2)
}

/// OUT level `r` ticks into a cycle loaded with `n`.
fn seg_out(mode: u8, n: u64, r: u64) -> bool {
    match mode {
        0 | 1 => r >= n,
        2 => {
            let p = period(n);
            r % p != p - 1
        }
        3 => {
            let p = period(n);
            r % p < p.div_ceil(2)
        }
        _ => r != n,
    }
}

/// Counting-element value `r` ticks into a cycle loaded with `n`.
fn seg_count(mode: u8, n: u64, r: u64) -> u16 {
    let value = match mode {
        2 => {
            let p = period(n);
            p - r % p
        }
        3 => {
            let p = period(n);
            let half = p.div_ceil(2);
            let phase = r % p;
            let into_half = if phase < half { phase } else { phase - half };
            (p & !1).saturating_sub(2 * into_half)
        }
        // One-shot modes keep decrementing past zero, wrapping at 16 bits.
        _ => n + 0x1_0000 - (r & 0xffff),
    };
    (value & 0xffff) as u16
}

/// Rising OUT edges `r` ticks into a cycle for `r` in (r1, r2].
fn seg_edges(mode: u8, n: u64, r1: u64, r2: u64) -> u64 {
    if r2 <= r1 {
        return 0;
    }
    match mode {
        2 | 3 => {
            let p = period(n);
            r2 / p - r1 / p
        }
        _ => {
            let edge = one_shot_edge(mode, n);
            u64::from(r1 < edge && edge <= r2)
        }
    }
}

/// First rising OUT edge strictly after `r` ticks into a cycle.
fn seg_next_edge(mode: u8, n: u64, r: u64) -> Option<u64> {
    match mode {
        2 | 3 => {
            let p = period(n);
            (r / p).checked_add(1)?.checked_mul(p)
        }
        _ => {
            let edge = one_shot_edge(mode, n);
            (r < edge).then_some(edge)
        }
    }
}

/// Tick of the single rising edge of the one-shot modes.
fn one_shot_edge(mode: u8, n: u64) -> u64 {
    match mode {
        // Terminal count: OUT goes high.
        0 | 1 => n,
        // Strobe: OUT is low during tick n and rises after it.
        _ => n + 1,
    }
}

/// Whether a channel's counting element holds a count.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum CounterState {
    /// Control word written, no count yet.
    Unloaded,
    /// Modes 1 and 5: count written, waiting for a rising gate.
    AwaitingTrigger,
    Counting(Counter),
}

/// A count latched by the counter-latch or read-back command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct LatchedCount {
    value: u16,
    /// Word access: the low byte has been read.
    high_next: bool,
}

/// One of the three counters.
#[derive(Clone, Debug, PartialEq)]
struct Channel {
    /// 0..=5 (control-word modes 6 and 7 are aliases of 2 and 3).
    mode: u8,
    access: Access,
    bcd: bool,
    /// Count register: the last complete count written (1..=65536).
    count_register: u32,
    /// Word access: the low byte written, waiting for the high byte.
    low_byte_written: Option<u8>,
    /// Word access without a latch: the next live read returns the high byte.
    read_high_next: bool,
    latched_count: Option<LatchedCount>,
    latched_status: Option<u8>,
    /// Status bit 6: a count was written but not yet loaded (cleared on load here).
    null_count: bool,
    gate: bool,
    state: CounterState,
}

impl Channel {
    fn new(gate: bool) -> Self {
        Channel {
            mode: 0,
            access: Access::Word,
            bcd: false,
            count_register: 0x1_0000,
            low_byte_written: None,
            read_high_next: false,
            latched_count: None,
            latched_status: None,
            null_count: true,
            gate,
            state: CounterState::Unloaded,
        }
    }

    fn out(&self, now_ns: u64) -> bool {
        match self.state {
            // After a control word OUT is low in mode 0 and high in every other mode.
            CounterState::Unloaded => self.mode != 0,
            CounterState::AwaitingTrigger => true,
            CounterState::Counting(_) if matches!(self.mode, 2 | 3) && !self.gate => true,
            CounterState::Counting(c) => {
                let (n, r) = c.resolve(c.effective_ticks(now_ns));
                seg_out(self.mode, n, r)
            }
        }
    }

    fn count(&self, now_ns: u64) -> u16 {
        match self.state {
            CounterState::Unloaded | CounterState::AwaitingTrigger => self.count_register as u16,
            CounterState::Counting(c) => {
                let (n, r) = c.resolve(c.effective_ticks(now_ns));
                seg_count(self.mode, n, r)
            }
        }
    }

    /// Rising OUT edges produced by counting in (a, b].
    fn edges_between(&self, a_ns: u64, b_ns: u64) -> u64 {
        match self.state {
            CounterState::Counting(c) if b_ns > a_ns => {
                c.edges(self.mode, c.effective_ticks(a_ns), c.effective_ticks(b_ns))
            }
            _ => 0,
        }
    }

    /// Time of the first rising OUT edge strictly after `t_ns`.
    fn next_edge_after(&self, t_ns: u64) -> Option<u64> {
        match self.state {
            CounterState::Counting(c) => {
                if matches!(self.mode, 2 | 3) && !self.gate {
                    return None;
                }
                let k = c.next_edge(self.mode, c.effective_ticks(t_ns))?;
                c.time_of_tick(k)
            }
            _ => None,
        }
    }

    fn status(&self, now_ns: u64) -> u8 {
        (u8::from(self.out(now_ns)) << 7)
            | (u8::from(self.null_count) << 6)
            | (self.access.rw_bits() << 4)
            | (self.mode << 1)
            | u8::from(self.bcd)
    }

    fn control(&mut self, rw: u8, mode: u8, bcd: bool) {
        self.access = Access::from_rw(rw);
        self.mode = if mode >= 6 { mode - 4 } else { mode };
        self.bcd = bcd;
        self.low_byte_written = None;
        self.read_high_next = false;
        self.latched_count = None;
        self.latched_status = None;
        self.null_count = true;
        self.state = CounterState::Unloaded;
    }

    fn latch_count(&mut self, now_ns: u64) {
        // A second latch before the first is read is ignored.
        if self.latched_count.is_none() {
            self.latched_count = Some(LatchedCount { value: self.count(now_ns), high_next: false });
        }
    }

    fn latch_status(&mut self, now_ns: u64) {
        if self.latched_status.is_none() {
            self.latched_status = Some(self.status(now_ns));
        }
    }

    fn write(&mut self, value: u8, now_ns: u64) {
        let count = match self.access {
            Access::LowByte => u16::from(value),
            Access::HighByte => u16::from(value) << 8,
            Access::Word => match self.low_byte_written.take() {
                None => {
                    self.low_byte_written = Some(value);
                    return;
                }
                Some(low) => u16::from_le_bytes([low, value]),
            },
        };
        self.load(if count == 0 { 0x1_0000 } else { u32::from(count) }, now_ns);
    }

    fn load(&mut self, count: u32, now_ns: u64) {
        self.count_register = count;
        self.null_count = false;
        match self.mode {
            0 | 4 => self.state = CounterState::Counting(Counter::fresh(count, now_ns, self.gate)),
            1 | 5 => {
                // A new count does not disturb a one-shot in progress; the next trigger uses it.
                if self.state == CounterState::Unloaded {
                    self.state = CounterState::AwaitingTrigger;
                }
            }
            _ => match &mut self.state {
                CounterState::Counting(c) if self.gate => {
                    let e = c.effective_ticks(now_ns);
                    c.settle(e);
                    let boundary = match c.staged {
                        Some(s) => s.at_tick,
                        None => {
                            let p = period(u64::from(c.reload));
                            let into = e.saturating_sub(c.cycle_start);
                            c.cycle_start.saturating_add((into / p + 1) * p)
                        }
                    };
                    c.staged = Some(StagedReload { reload: count, at_tick: boundary });
                }
                // Not counting yet, or stopped by the gate (which reloads when it rises).
                _ => self.state = CounterState::Counting(Counter::fresh(count, now_ns, self.gate)),
            },
        }
    }

    fn read(&mut self, now_ns: u64) -> u8 {
        if let Some(status) = self.latched_status.take() {
            return status;
        }
        if let Some(mut latch) = self.latched_count {
            let [low, high] = latch.value.to_le_bytes();
            return match self.access {
                Access::LowByte => {
                    self.latched_count = None;
                    low
                }
                Access::HighByte => {
                    self.latched_count = None;
                    high
                }
                Access::Word if latch.high_next => {
                    self.latched_count = None;
                    high
                }
                Access::Word => {
                    latch.high_next = true;
                    self.latched_count = Some(latch);
                    low
                }
            };
        }
        let [low, high] = self.count(now_ns).to_le_bytes();
        match self.access {
            Access::LowByte => low,
            Access::HighByte => high,
            Access::Word => {
                self.read_high_next = !self.read_high_next;
                if self.read_high_next {
                    low
                } else {
                    high
                }
            }
        }
    }

    fn set_gate(&mut self, gate: bool, now_ns: u64) {
        if gate == self.gate {
            return;
        }
        self.gate = gate;
        match (self.mode, &mut self.state) {
            // Modes 0 and 4: the gate pauses and resumes counting.
            (0 | 4, CounterState::Counting(c)) => {
                if gate {
                    c.anchor_ns = now_ns;
                    c.running = true;
                } else {
                    c.ticks_at_anchor = c.effective_ticks(now_ns);
                    c.running = false;
                }
            }
            // Modes 2 and 3: a low gate stops counting (OUT high); a rising gate reloads.
            (2 | 3, CounterState::Counting(c)) => {
                if gate {
                    *c = Counter::fresh(self.count_register, now_ns, true);
                } else {
                    c.ticks_at_anchor = c.effective_ticks(now_ns);
                    c.running = false;
                }
            }
            // Modes 1 and 5: a rising gate (re)triggers; the level does not stop counting.
            (1 | 5, CounterState::AwaitingTrigger | CounterState::Counting(_)) if gate => {
                self.state = CounterState::Counting(Counter::fresh(self.count_register, now_ns, true));
            }
            _ => {}
        }
    }
}

/// Edges of channel 0 counted but not yet reported by [`Pit::poll_irq0`].
#[derive(Clone, Debug, PartialEq)]
struct Irq0Accounting {
    /// The poll point: time of the last poll.
    polled_ns: u64,
    /// Edges up to this time are included in `pending` (>= `polled_ns`).
    counted_ns: u64,
    /// Edges in (polled_ns, counted_ns], from before channel 0 was last reprogrammed.
    pending: u64,
    /// Time of the first of the `pending` edges.
    first_pending_ns: u64,
}

/// The 8254 PIT and port 0x61.
#[derive(Clone, Debug, PartialEq)]
pub struct Pit {
    channels: [Channel; 3],
    /// Port 0x61 bits 0..=3 as last written (gate 2, speaker data, parity/IOCHK enables).
    port61: u8,
    irq0: Irq0Accounting,
}

impl Default for Pit {
    fn default() -> Self {
        Self::new()
    }
}

impl Pit {
    /// Power-on state: nothing programmed, channel 2's gate low.
    pub fn new() -> Self {
        Pit {
            channels: [Channel::new(true), Channel::new(true), Channel::new(false)],
            port61: 0,
            irq0: Irq0Accounting { polled_ns: 0, counted_ns: 0, pending: 0, first_pending_ns: 0 },
        }
    }

    /// Guest read of 0x40..=0x42 (0x43 is write-only and, like unknown ports, reads 0xff).
    pub fn read(&mut self, port: u16, now_ns: u64) -> u8 {
        match port {
            CHANNEL0_PORT..=CHANNEL2_PORT => self.channels[usize::from(port - CHANNEL0_PORT)].read(now_ns),
            _ => 0xff,
        }
    }

    /// Guest write to 0x40..=0x43; other ports are ignored.
    pub fn write(&mut self, port: u16, value: u8, now_ns: u64) {
        match port {
            CHANNEL0_PORT => {
                self.account_irq0(now_ns);
                self.channels[0].write(value, now_ns);
            }
            CHANNEL1_PORT | CHANNEL2_PORT => self.channels[usize::from(port - CHANNEL0_PORT)].write(value, now_ns),
            COMMAND_PORT => self.write_command(value, now_ns),
            _ => {}
        }
    }

    fn write_command(&mut self, value: u8, now_ns: u64) {
        let select = value >> 6;
        if select == 3 {
            // Read-back: bits 5 (COUNT) and 4 (STATUS) are active low; bits 1..=3 pick channels.
            for (i, channel) in self.channels.iter_mut().enumerate() {
                if value & (2 << i) == 0 {
                    continue;
                }
                if value & 0x10 == 0 {
                    channel.latch_status(now_ns);
                }
                if value & 0x20 == 0 {
                    channel.latch_count(now_ns);
                }
            }
            return;
        }
        let rw = (value >> 4) & 3;
        let channel = usize::from(select);
        if rw == 0 {
            self.channels[channel].latch_count(now_ns);
            return;
        }
        if channel == 0 {
            self.account_irq0(now_ns);
        }
        self.channels[channel].control(rw, (value >> 1) & 7, value & 1 != 0);
    }

    /// Port 0x61: bit 0 gate 2, bit 1 speaker data (as written), bits 2-3 as written,
    /// bit 4 refresh toggle (flips every 18 PIT ticks of virtual time), bit 5 OUT2.
    pub fn read_port61(&mut self, now_ns: u64) -> u8 {
        let refresh = (ns_to_ticks(now_ns) / REFRESH_TICKS) & 1 == 1;
        (self.port61 & 0x0f) | (u8::from(refresh) << 4) | (u8::from(self.channels[2].out(now_ns)) << 5)
    }

    /// Port 0x61 write: bit 0 drives channel 2's gate; bits 1-3 are stored.
    pub fn write_port61(&mut self, value: u8, now_ns: u64) {
        self.port61 = value & 0x0f;
        self.channels[2].set_gate(value & 1 != 0, now_ns);
    }

    /// Number of rising edges of channel 0's OUT (wired to IRQ0) in (last_poll, now_ns];
    /// advances the poll point. A `now_ns` before the poll point returns 0 and changes nothing.
    pub fn poll_irq0(&mut self, now_ns: u64) -> u64 {
        if now_ns < self.irq0.polled_ns {
            return 0;
        }
        self.account_irq0(now_ns);
        self.irq0.polled_ns = now_ns;
        std::mem::take(&mut self.irq0.pending)
    }

    /// Virtual time (ns) of channel 0's next rising OUT edge after the poll point, if one is
    /// scheduled. At or after this time, [`Pit::poll_irq0`] returns at least 1.
    pub fn next_irq0_deadline(&self) -> Option<u64> {
        if self.irq0.pending > 0 {
            return Some(self.irq0.first_pending_ns);
        }
        self.channels[0].next_edge_after(self.irq0.counted_ns)
    }

    /// Fold channel 0's edges up to `now_ns` into the pending count, before its configuration
    /// changes or a poll reports them.
    fn account_irq0(&mut self, now_ns: u64) {
        let from = self.irq0.counted_ns;
        if now_ns <= from {
            return;
        }
        let channel = &self.channels[0];
        let edges = channel.edges_between(from, now_ns);
        if edges > 0 && self.irq0.pending == 0 {
            self.irq0.first_pending_ns = channel.next_edge_after(from).unwrap_or(now_ns);
        }
        self.irq0.pending = self.irq0.pending.saturating_add(edges);
        self.irq0.counted_ns = now_ns;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: u64 = 1_000_000_000;

    /// Time of the k-th tick after `t0`.
    fn tick(t0: u64, k: u64) -> u64 {
        t0 + ticks_to_ns_ceil(k) as u64
    }

    fn program(pit: &mut Pit, channel: u8, mode: u8, count: u16, now: u64) {
        pit.write(COMMAND_PORT, (channel << 6) | 0x30 | (mode << 1), now);
        let port = CHANNEL0_PORT + u16::from(channel);
        pit.write(port, count as u8, now);
        pit.write(port, (count >> 8) as u8, now);
    }

    fn read_word(pit: &mut Pit, port: u16, now: u64) -> u16 {
        let low = pit.read(port, now);
        let high = pit.read(port, now);
        u16::from_le_bytes([low, high])
    }

    #[test]
    fn tick_conversion_is_exact() {
        assert_eq!(ns_to_ticks(SEC), PIT_HZ);
        assert_eq!(ns_to_ticks(0), 0);
        assert_eq!(ns_to_ticks(838), 0);
        assert_eq!(ns_to_ticks(839), 1);
        assert_eq!(ticks_to_ns_ceil(1), 839);
        assert_eq!(ticks_to_ns_ceil(PIT_HZ), SEC as u128);
        for k in [1u64, 2, 1193, 65536, 1_000_000] {
            let t = ticks_to_ns_ceil(k) as u64;
            assert_eq!(ns_to_ticks(t), k);
            assert_eq!(ns_to_ticks(t - 1), k - 1);
        }
        assert_eq!(ns_to_ticks(u64::MAX), (u64::MAX as u128 * 1_193_182 / 1_000_000_000) as u64);
    }

    #[test]
    fn power_on_is_silent() {
        let mut pit = Pit::new();
        assert_eq!(pit.next_irq0_deadline(), None);
        assert_eq!(pit.poll_irq0(10 * SEC), 0);
        assert_eq!(pit.read_port61(0) & 0x20, 0);
    }

    #[test]
    fn mode2_divisor_1193_is_1000_hz_with_exact_deadlines() {
        let mut pit = Pit::new();
        program(&mut pit, 0, 2, 1193, 0);
        for k in 1..=5u64 {
            let deadline = tick(0, k * 1193);
            assert_eq!(pit.next_irq0_deadline(), Some(deadline));
            assert_eq!(pit.poll_irq0(deadline - 1), 0);
            assert_eq!(pit.next_irq0_deadline(), Some(deadline));
            assert_eq!(pit.poll_irq0(deadline), 1);
        }
        assert_eq!(pit.poll_irq0(SEC), 995);
        assert_eq!(pit.poll_irq0(2 * SEC), 1000);
        // Deadline lands exactly on the next period boundary after the poll point.
        let k = ns_to_ticks(2 * SEC) / 1193 + 1;
        assert_eq!(pit.next_irq0_deadline(), Some(tick(0, k * 1193)));
    }

    #[test]
    fn mode2_phase_is_the_load_time() {
        let mut pit = Pit::new();
        let t0 = 123_456_789;
        program(&mut pit, 0, 2, 100, t0);
        assert_eq!(pit.next_irq0_deadline(), Some(tick(t0, 100)));
        assert_eq!(pit.poll_irq0(t0 + SEC), PIT_HZ / 100);
    }

    #[test]
    fn mode2_count_and_out_sequence() {
        let mut pit = Pit::new();
        program(&mut pit, 2, 2, 4, 0);
        pit.write_port61(0x01, 0); // gate high reloads at t=0
        let seen: Vec<(u16, bool)> = (0..9)
            .map(|k| {
                let t = tick(0, k);
                pit.write(COMMAND_PORT, 0x80, t);
                (read_word(&mut pit, CHANNEL2_PORT, t), pit.read_port61(t) & 0x20 != 0)
            })
            .collect();
        assert_eq!(
            seen,
            vec![(4, true), (3, true), (2, true), (1, false), (4, true), (3, true), (2, true), (1, false), (4, true)]
        );
    }

    #[test]
    fn mode3_square_wave_edges_and_levels() {
        let mut pit = Pit::new();
        program(&mut pit, 0, 3, 1000, 0);
        let mut out = Vec::new();
        for k in 0..2000 {
            pit.write(COMMAND_PORT, 0xe2, tick(0, k)); // read-back status of channel 0
            out.push(pit.read(CHANNEL0_PORT, tick(0, k)) & 0x80 != 0);
        }
        assert!(out[..500].iter().all(|&o| o));
        assert!(out[500..1000].iter().all(|&o| !o));
        assert!(out[1000..1500].iter().all(|&o| o));

        let mut last = 0;
        let mut edges = Vec::new();
        for _ in 0..4 {
            let d = pit.next_irq0_deadline().unwrap();
            assert_eq!(pit.poll_irq0(d), 1);
            edges.push(ns_to_ticks(d) - last);
            last = ns_to_ticks(d);
        }
        assert_eq!(edges, vec![1000; 4]);
    }

    #[test]
    fn mode3_odd_count_and_counts_by_two() {
        let mut pit = Pit::new();
        program(&mut pit, 0, 3, 5, 0);
        let levels: Vec<bool> = (0..10)
            .map(|k| {
                pit.write(COMMAND_PORT, 0xe2, tick(0, k));
                pit.read(CHANNEL0_PORT, 0) & 0x80 != 0
            })
            .collect();
        assert_eq!(levels, [true, true, true, false, false, true, true, true, false, false]);

        program(&mut pit, 0, 3, 6, 0);
        let counts: Vec<u16> = (0..6).map(|k| read_word(&mut pit, CHANNEL0_PORT, tick(0, k))).collect();
        assert_eq!(counts, [6, 4, 2, 6, 4, 2]);
    }

    #[test]
    fn mode0_single_edge_at_terminal_count() {
        let mut pit = Pit::new();
        let t0 = 5000;
        program(&mut pit, 0, 0, 500, t0);
        let edge = tick(t0, 500);
        assert_eq!(pit.next_irq0_deadline(), Some(edge));
        assert_eq!(pit.poll_irq0(edge - 1), 0);
        assert_eq!(pit.poll_irq0(edge), 1);
        assert_eq!(pit.next_irq0_deadline(), None);
        assert_eq!(pit.poll_irq0(100 * SEC), 0);
        // The count keeps decrementing through zero.
        assert_eq!(read_word(&mut pit, CHANNEL0_PORT, tick(t0, 501)), 0xffff);
    }

    #[test]
    fn counter_latch_freezes_value() {
        let mut pit = Pit::new();
        program(&mut pit, 0, 2, 10_000, 0);
        pit.write(COMMAND_PORT, 0x00, tick(0, 100));
        assert_eq!(read_word(&mut pit, CHANNEL0_PORT, tick(0, 5000)), 9_900);
        // Latch released: live value again.
        assert_eq!(read_word(&mut pit, CHANNEL0_PORT, tick(0, 5000)), 5_000);
        // A second latch before reading is ignored.
        pit.write(COMMAND_PORT, 0x00, tick(0, 200));
        pit.write(COMMAND_PORT, 0x00, tick(0, 300));
        assert_eq!(read_word(&mut pit, CHANNEL0_PORT, tick(0, 400)), 9_800);
    }

    #[test]
    fn access_modes_sequence_bytes() {
        let mut pit = Pit::new();
        // Low byte only.
        pit.write(COMMAND_PORT, 0x14, 0);
        pit.write(CHANNEL0_PORT, 0x34, 0);
        assert_eq!(pit.read(CHANNEL0_PORT, 0), 0x34);
        assert_eq!(pit.read(CHANNEL0_PORT, 0), 0x34);
        // High byte only.
        pit.write(COMMAND_PORT, 0x24, 0);
        pit.write(CHANNEL0_PORT, 0x12, 0);
        assert_eq!(pit.read(CHANNEL0_PORT, 0), 0x12);
        assert_eq!(pit.next_irq0_deadline(), Some(tick(0, 0x1200)));
        // Word: nothing loads until the high byte arrives.
        pit.write(COMMAND_PORT, 0x34, 0);
        pit.write(CHANNEL0_PORT, 0xcd, 0);
        assert_eq!(pit.next_irq0_deadline(), None);
        pit.write(CHANNEL0_PORT, 0xab, 0);
        assert_eq!(pit.read(CHANNEL0_PORT, 0), 0xcd);
        assert_eq!(pit.read(CHANNEL0_PORT, 0), 0xab);
        // Reload value 0 means 65536.
        program(&mut pit, 0, 2, 0, 0);
        assert_eq!(read_word(&mut pit, CHANNEL0_PORT, 0), 0);
        assert_eq!(read_word(&mut pit, CHANNEL0_PORT, tick(0, 1)), 0xffff);
        assert_eq!(pit.next_irq0_deadline(), Some(tick(0, 65536)));
    }

    #[test]
    fn read_back_status_and_count() {
        let mut pit = Pit::new();
        pit.write(COMMAND_PORT, 0xb0, 0); // channel 2, word, mode 0
        pit.write(COMMAND_PORT, 0xe8, 0); // read-back status of channel 2
        assert_eq!(pit.read(CHANNEL2_PORT, 0), 0x70, "OUT low, null count, word, mode 0");
        pit.write(CHANNEL2_PORT, 0x10, 0);
        pit.write(CHANNEL2_PORT, 0x00, 0);
        pit.write_port61(1, 0);
        // Status and count of channel 2 latched together: status first, then the count.
        pit.write(COMMAND_PORT, 0xc8, tick(0, 4));
        assert_eq!(pit.read(CHANNEL2_PORT, tick(0, 10)), 0x30);
        assert_eq!(read_word(&mut pit, CHANNEL2_PORT, tick(0, 10)), 12);
        pit.write(COMMAND_PORT, 0xe8, tick(0, 16));
        assert_eq!(pit.read(CHANNEL2_PORT, 0), 0xb0, "OUT high after terminal count");
        // Mode 2 in BCD on channel 1 (BCD is stored, counting stays binary).
        pit.write(COMMAND_PORT, 0x75, 0);
        pit.write(COMMAND_PORT, 0xe4, 0);
        assert_eq!(pit.read(CHANNEL1_PORT, 0), 0xf5);
    }

    #[test]
    fn channel2_calibration_loop_sees_out2_rise() {
        // Linux's pit_calibrate_tsc: gate high, speaker off, mode 0, 50 ms, poll bit 5.
        let mut pit = Pit::new();
        let t0 = 7 * SEC + 3;
        let v = pit.read_port61(t0);
        pit.write_port61((v & !0x02) | 0x01, t0);
        pit.write(COMMAND_PORT, 0xb0, t0);
        let latch = (PIT_HZ / 20) as u16;
        pit.write(CHANNEL2_PORT, latch as u8, t0);
        pit.write(CHANNEL2_PORT, (latch >> 8) as u8, t0);
        let mut now = t0;
        let mut polls = 0;
        while pit.read_port61(now) & 0x20 == 0 {
            now += 997;
            polls += 1;
            assert!(polls < 1_000_000);
        }
        let edge = tick(t0, u64::from(latch));
        assert!(now >= edge && now < edge + 997, "OUT2 rose at {now}, expected {edge}");
        // Channel 2 never touches IRQ0.
        assert_eq!(pit.poll_irq0(now), 0);
    }

    #[test]
    fn channel2_gate_pauses_mode0_and_quick_calibrate_reads_msb() {
        let mut pit = Pit::new();
        pit.write_port61(0x01, 0);
        program(&mut pit, 2, 0, 0xffff, 0);
        // quick_pit_calibrate reads low then high byte, live.
        assert_eq!(read_word(&mut pit, CHANNEL2_PORT, tick(0, 256)), 0xffff - 256);
        pit.write_port61(0x00, tick(0, 300));
        assert_eq!(read_word(&mut pit, CHANNEL2_PORT, tick(0, 5000)), 0xffff - 300);
        pit.write_port61(0x01, 10 * SEC);
        assert_eq!(read_word(&mut pit, CHANNEL2_PORT, tick(10 * SEC, 10)), 0xffff - 310);
        assert_eq!(pit.read_port61(10 * SEC) & 0x01, 1);
    }

    #[test]
    fn channel2_mode2_gate_low_forces_out_high_and_rising_reloads() {
        let mut pit = Pit::new();
        program(&mut pit, 2, 2, 10, 0);
        assert_ne!(pit.read_port61(0) & 0x20, 0);
        assert_eq!(read_word(&mut pit, CHANNEL2_PORT, tick(0, 5)), 10, "gate low: not counting");
        let rise = tick(0, 20);
        pit.write_port61(1, rise);
        assert_eq!(read_word(&mut pit, CHANNEL2_PORT, tick(rise, 9)), 1);
        assert_eq!(pit.read_port61(tick(rise, 9)) & 0x20, 0);
        assert_ne!(pit.read_port61(tick(rise, 10)) & 0x20, 0);
    }

    #[test]
    fn reprogramming_mid_count() {
        let mut pit = Pit::new();
        program(&mut pit, 0, 2, 1000, 0);
        // New count without a control word: current period finishes first.
        pit.write(CHANNEL0_PORT, 0xf4, tick(0, 1500));
        pit.write(CHANNEL0_PORT, 0x01, tick(0, 1500)); // 500
        assert_eq!(pit.next_irq0_deadline(), Some(tick(0, 1000)));
        assert_eq!(pit.poll_irq0(tick(0, 1999)), 1);
        assert_eq!(read_word(&mut pit, CHANNEL0_PORT, tick(0, 1999)), 1);
        assert_eq!(pit.poll_irq0(tick(0, 2000)), 1);
        assert_eq!(read_word(&mut pit, CHANNEL0_PORT, tick(0, 2000)), 500);
        assert_eq!(pit.next_irq0_deadline(), Some(tick(0, 2500)));
        assert_eq!(pit.poll_irq0(tick(0, 3000)), 2);

        // A control word restarts immediately; edges before it are still reported.
        let t = tick(0, 3700);
        program(&mut pit, 0, 2, 100, t);
        assert_eq!(pit.next_irq0_deadline(), Some(tick(0, 3500)), "unpolled edge first");
        assert_eq!(pit.poll_irq0(t), 1);
        assert_eq!(pit.next_irq0_deadline(), Some(tick(t, 100)));

        // Mode 0 reloaded mid-count restarts the count.
        let t = 50 * SEC;
        pit.poll_irq0(t);
        program(&mut pit, 0, 0, 1000, t);
        pit.write(CHANNEL0_PORT, 0xd0, tick(t, 600));
        pit.write(CHANNEL0_PORT, 0x07, tick(t, 600)); // 2000
        assert_eq!(pit.poll_irq0(tick(t, 1500)), 0);
        assert_eq!(pit.next_irq0_deadline(), Some(tick(tick(t, 600), 2000)));
    }

    #[test]
    fn control_word_transition_is_not_an_irq_edge() {
        let mut pit = Pit::new();
        pit.write(COMMAND_PORT, 0x34, 100);
        assert_eq!(pit.poll_irq0(200), 0);
    }

    #[test]
    fn polling_backwards_returns_zero() {
        let mut pit = Pit::new();
        program(&mut pit, 0, 2, 1193, 0);
        assert_eq!(pit.poll_irq0(SEC), 1000);
        assert_eq!(pit.poll_irq0(SEC / 2), 0);
        assert_eq!(pit.poll_irq0(SEC), 0);
        assert_eq!(pit.poll_irq0(2 * SEC), 1000);
    }

    #[test]
    fn mode4_strobe_edge_after_count_plus_one() {
        let mut pit = Pit::new();
        pit.write(COMMAND_PORT, 0x38, 0);
        pit.write(CHANNEL0_PORT, 50, 0);
        pit.write(CHANNEL0_PORT, 0, 0);
        assert_eq!(pit.next_irq0_deadline(), Some(tick(0, 51)));
        assert_eq!(pit.poll_irq0(SEC), 1);
        assert_eq!(pit.next_irq0_deadline(), None);
    }

    #[test]
    fn mode1_and_5_trigger_on_gate() {
        let mut pit = Pit::new();
        program(&mut pit, 2, 1, 100, 0);
        assert_ne!(pit.read_port61(0) & 0x20, 0);
        pit.write_port61(1, 1000);
        assert_eq!(pit.read_port61(1000) & 0x20, 0);
        assert_ne!(pit.read_port61(tick(1000, 100)) & 0x20, 0);
        program(&mut pit, 2, 5, 100, SEC);
        pit.write_port61(0, SEC);
        pit.write_port61(1, SEC);
        assert_eq!(pit.read_port61(tick(SEC, 100)) & 0x20, 0);
        assert_ne!(pit.read_port61(tick(SEC, 101)) & 0x20, 0);
    }

    #[test]
    fn refresh_bit_toggles_deterministically() {
        let mut pit = Pit::new();
        let bits: Vec<u8> = (0..4).map(|i| pit.read_port61(i * 15_086) & 0x10).collect();
        assert_eq!(bits, [0, 0x10, 0, 0x10]);
        pit.write_port61(0xff, 0);
        assert_eq!(pit.read_port61(0) & 0x0f, 0x0f);
    }

    #[test]
    fn unknown_ports() {
        let mut pit = Pit::new();
        let before = pit.clone();
        assert_eq!(pit.read(0x43, 0), 0xff);
        assert_eq!(pit.read(0x44, 0), 0xff);
        pit.write(0x44, 0x34, 0);
        assert_eq!(pit, before);
    }

    #[test]
    fn no_panic_on_arbitrary_sequences() {
        let mut pit = Pit::new();
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut now = 0u64;
        for _ in 0..200_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let value = (x >> 24) as u8;
            now = now.wrapping_add((x >> 40) % 5000);
            match x % 7 {
                0 => pit.write(0x40 + (x >> 8) as u16 % 5, value, now),
                1 => pit.write(COMMAND_PORT, value, now),
                2 => {
                    pit.read(0x40 + (x >> 8) as u16 % 5, now);
                }
                3 => pit.write_port61(value, now),
                4 => {
                    pit.read_port61(now);
                }
                5 => {
                    pit.poll_irq0(now);
                }
                _ => {
                    pit.next_irq0_deadline();
                }
            }
        }
        // Extreme times.
        program(&mut pit, 0, 2, 2, u64::MAX - 10);
        pit.poll_irq0(u64::MAX);
        pit.next_irq0_deadline();
        pit.read(CHANNEL0_PORT, 0);
    }

    #[test]
    fn deadline_and_poll_agree_under_random_reprogramming() {
        let mut pit = Pit::new();
        let mut x: u32 = 77;
        let mut now = 0u64;
        for _ in 0..2000 {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            if x & 3 == 0 {
                let mode = [0, 2, 3, 4][(x >> 4) as usize % 4];
                program(&mut pit, 0, mode, (x >> 8) as u16, now);
            }
            match pit.next_irq0_deadline() {
                Some(d) => {
                    assert!(d > now, "every edge up to `now` was polled");
                    let mut probe = pit.clone();
                    assert_eq!(probe.poll_irq0(d - 1), 0);
                    assert_eq!(pit.poll_irq0(d), 1);
                    now = d;
                }
                None => {
                    now += 10_000;
                    assert_eq!(pit.poll_irq0(now), 0);
                }
            }
        }
    }

    #[test]
    fn clone_behaves_identically() {
        let mut pit = Pit::new();
        program(&mut pit, 0, 3, 777, 10);
        pit.write(COMMAND_PORT, 0x00, 5000);
        let _ = pit.read(CHANNEL0_PORT, 5000); // half-read latch
        let mut copy = pit.clone();
        assert_eq!(copy, pit);
        assert_eq!(pit.read(CHANNEL0_PORT, 9000), copy.read(CHANNEL0_PORT, 9000));
        assert_eq!(pit.poll_irq0(SEC), copy.poll_irq0(SEC));
        assert_eq!(pit.next_irq0_deadline(), copy.next_irq0_deadline());
        assert_eq!(pit, copy);
    }
}
