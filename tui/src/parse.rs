//! What people type into the prompts: icounts, addresses, memory targets. Errors are
//! messages for the status bar.

use kvm_bindings::kvm_regs;
use ttvm_replay::timeline::{WatchKind, Watchpoint};

use crate::symbols::Symbols;

/// A general register the memory pane can follow.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Reg {
    /// RAX.
    Rax,
    /// RBX.
    Rbx,
    /// RCX.
    Rcx,
    /// RDX.
    Rdx,
    /// RSI.
    Rsi,
    /// RDI.
    Rdi,
    /// RBP.
    Rbp,
    /// RSP.
    Rsp,
    /// R8.
    R8,
    /// R9.
    R9,
    /// R10.
    R10,
    /// R11.
    R11,
    /// R12.
    R12,
    /// R13.
    R13,
    /// R14.
    R14,
    /// R15.
    R15,
    /// RIP.
    Rip,
}

impl Reg {
    /// All of them.
    pub const ALL: [Reg; 17] = [
        Reg::Rax,
        Reg::Rbx,
        Reg::Rcx,
        Reg::Rdx,
        Reg::Rsi,
        Reg::Rdi,
        Reg::Rbp,
        Reg::Rsp,
        Reg::R8,
        Reg::R9,
        Reg::R10,
        Reg::R11,
        Reg::R12,
        Reg::R13,
        Reg::R14,
        Reg::R15,
        Reg::Rip,
    ];

    /// Lower-case name.
    pub fn name(self) -> &'static str {
        match self {
            Reg::Rax => "rax",
            Reg::Rbx => "rbx",
            Reg::Rcx => "rcx",
            Reg::Rdx => "rdx",
            Reg::Rsi => "rsi",
            Reg::Rdi => "rdi",
            Reg::Rbp => "rbp",
            Reg::Rsp => "rsp",
            Reg::R8 => "r8",
            Reg::R9 => "r9",
            Reg::R10 => "r10",
            Reg::R11 => "r11",
            Reg::R12 => "r12",
            Reg::R13 => "r13",
            Reg::R14 => "r14",
            Reg::R15 => "r15",
            Reg::Rip => "rip",
        }
    }

    /// Its value in `r`.
    pub fn value(self, r: &kvm_regs) -> u64 {
        match self {
            Reg::Rax => r.rax,
            Reg::Rbx => r.rbx,
            Reg::Rcx => r.rcx,
            Reg::Rdx => r.rdx,
            Reg::Rsi => r.rsi,
            Reg::Rdi => r.rdi,
            Reg::Rbp => r.rbp,
            Reg::Rsp => r.rsp,
            Reg::R8 => r.r8,
            Reg::R9 => r.r9,
            Reg::R10 => r.r10,
            Reg::R11 => r.r11,
            Reg::R12 => r.r12,
            Reg::R13 => r.r13,
            Reg::R14 => r.r14,
            Reg::R15 => r.r15,
            Reg::Rip => r.rip,
        }
    }

    fn from_name(s: &str) -> Option<Reg> {
        let s = s.strip_prefix('$').unwrap_or(s).to_ascii_lowercase();
        Reg::ALL.into_iter().find(|r| r.name() == s)
    }
}

/// What the memory pane shows: a register's value (followed as it changes) or a fixed
/// address, plus an offset (which scrolling changes).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemTarget {
    /// The register followed, if any.
    pub reg: Option<Reg>,
    /// Added to the register (or the address itself when no register is followed).
    pub offset: u64,
    /// How it was typed, for the pane title.
    pub text: String,
}

impl Default for MemTarget {
    /// The stack: the most useful thing to look at by default.
    fn default() -> Self {
        Self { reg: Some(Reg::Rsp), offset: 0, text: "rsp".into() }
    }
}

impl MemTarget {
    /// The guest-virtual address shown, given the registers.
    pub fn address(&self, regs: &kvm_regs) -> u64 {
        self.reg.map_or(0, |r| r.value(regs)).wrapping_add(self.offset)
    }
}

fn parse_number(s: &str) -> Option<u64> {
    let s: String = s.chars().filter(|&c| c != '_' && c != ',').collect();
    if let Some(h) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        return u64::from_str_radix(h, 16).ok();
    }
    s.parse().ok()
}

/// Parses a `g` prompt: a decimal or hex icount with `_`/`,` separators, a `k`/`m` suffix,
/// a percentage of the run, or `+N`/`-N` relative to `cursor`.
pub fn parse_icount(text: &str, cursor: u64, length: u64) -> Result<u64, String> {
    let t = text.trim().to_ascii_lowercase();
    if t.is_empty() {
        return Err("type an icount".into());
    }
    let bad = || format!("\"{text}\" is not an icount (try 1234, 0x4d2, 50%, +1000, -5k)");
    let value = if let Some(p) = t.strip_suffix('%') {
        let f: f64 = p.trim().parse().map_err(|_| bad())?;
        if !(0.0..=100.0).contains(&f) {
            return Err(format!("{f}% is not within 0%..100%"));
        }
        return Ok(((length as f64) * f / 100.0).round() as u64);
    } else {
        let (sign, rest) = match t.as_bytes()[0] {
            b'+' => (1i8, &t[1..]),
            b'-' => (-1, &t[1..]),
            _ => (0, &t[..]),
        };
        let (digits, mult) = if let Some(d) = rest.strip_suffix('k') {
            (d, 1_000)
        } else if let Some(d) = rest.strip_suffix('m') {
            (d, 1_000_000)
        } else {
            (rest, 1)
        };
        let n = parse_number(digits.trim()).and_then(|n| n.checked_mul(mult)).ok_or_else(bad)?;
        match sign {
            1 => cursor.saturating_add(n),
            -1 => cursor.saturating_sub(n),
            _ => n,
        }
    };
    if value > length {
        return Err(format!("icount {value} is past the end of the history ({length} steps)"));
    }
    Ok(value)
}

/// Parses an address: `0x…` hex, a symbol, or `symbol+offset` / `symbol-offset`.
pub fn parse_address(text: &str, symbols: &Symbols) -> Result<u64, String> {
    let t = text.trim().trim_start_matches('*');
    if let Some(a) = t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
        return u64::from_str_radix(&a.replace('_', ""), 16).map_err(|_| format!("\"{text}\" is not a hex address"));
    }
    if let Some(a) = symbols.resolve(t) {
        return Ok(a);
    }
    let (base, off) = split_offset(t).ok_or_else(|| unknown(text, symbols))?;
    let a = symbols.resolve(base).ok_or_else(|| unknown(text, symbols))?;
    Ok(a.wrapping_add(off))
}

fn unknown(text: &str, symbols: &Symbols) -> String {
    if symbols.is_empty() {
        format!("\"{text}\": the kernel has no symbols; type a 0x address")
    } else {
        format!("\"{text}\" is neither a 0x address nor a symbol")
    }
}

/// Splits `base+off` / `base-off` into the base and a (wrapping) offset.
fn split_offset(t: &str) -> Option<(&str, u64)> {
    let i = t.rfind(['+', '-'])?;
    if i == 0 {
        return None;
    }
    let off = parse_number(t[i + 1..].trim())?;
    let off = if t.as_bytes()[i] == b'-' { off.wrapping_neg() } else { off };
    Some((t[..i].trim(), off))
}

/// Parses an `a` prompt: a register (followed as it changes), optionally `±offset`, or an
/// address as [`parse_address`] reads it.
pub fn parse_mem_target(text: &str, symbols: &Symbols) -> Result<MemTarget, String> {
    let t = text.trim();
    if t.is_empty() {
        return Ok(MemTarget::default());
    }
    if let Some(r) = Reg::from_name(t) {
        return Ok(MemTarget { reg: Some(r), offset: 0, text: t.to_string() });
    }
    if let Some((base, off)) = split_offset(t) {
        if let Some(r) = Reg::from_name(base) {
            return Ok(MemTarget { reg: Some(r), offset: off, text: t.to_string() });
        }
    }
    let a = parse_address(t, symbols)?;
    Ok(MemTarget { reg: None, offset: a, text: t.to_string() })
}

/// Bytes a watchpoint covers when no length is typed: a machine word.
pub const DEFAULT_WATCH_LEN: u64 = 8;

fn watch_kind(word: &str) -> Option<WatchKind> {
    match word.to_ascii_lowercase().as_str() {
        "write" | "w" => Some(WatchKind::Write),
        "read" | "r" => Some(WatchKind::Read),
        "access" | "a" | "rw" => Some(WatchKind::Access),
        _ => None,
    }
}

/// Parses a `w` prompt: `[write|read|access] ADDRESS [LEN]` (also `w`, `r`, `a`), where
/// ADDRESS is what [`parse_address`] reads; a write watchpoint of
/// [`DEFAULT_WATCH_LEN`] bytes unless said otherwise. Returns the watchpoint and how its
/// address was typed.
pub fn parse_watch(text: &str, symbols: &Symbols) -> Result<(Watchpoint, String), String> {
    let words: Vec<&str> = text.split_whitespace().collect();
    let (kind, rest) = match words.as_slice() {
        [first, rest @ ..] if !rest.is_empty() && watch_kind(first).is_some() => (watch_kind(first), rest),
        all => (None, all),
    };
    let usage = || format!("\"{text}\": type [write|read|access] ADDRESS [LEN], e.g. TICKS, read 0x1000 4");
    let (target, len) = match rest {
        [target] => (*target, DEFAULT_WATCH_LEN),
        [target, len] => (*target, parse_number(len).ok_or_else(|| format!("\"{len}\" is not a length in bytes"))?),
        _ => return Err(usage()),
    };
    let addr = parse_address(target, symbols)?;
    let w = Watchpoint::new(addr, len, kind.unwrap_or(WatchKind::Write)).map_err(|e| e.to_string())?;
    Ok((w, target.to_string()))
}

/// Parses a `d` prompt: breakpoint/watchpoint numbers separated by spaces or commas, or
/// `all` (None).
pub fn parse_ids(text: &str) -> Result<Option<Vec<u32>>, String> {
    let t = text.trim();
    if t.eq_ignore_ascii_case("all") || t == "*" {
        return Ok(None);
    }
    let ids: Result<Vec<u32>, String> = t
        .split(|c: char| c == ',' || c.is_whitespace())
        .filter(|w| !w.is_empty())
        .map(|w| w.parse().map_err(|_| format!("\"{w}\" is not a breakpoint or watchpoint number")))
        .collect();
    match ids? {
        v if v.is_empty() => Err("type the numbers to delete (1 3), or all".into()),
        v => Ok(Some(v)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn icounts() {
        assert_eq!(parse_icount("1_234", 0, 10_000), Ok(1234));
        assert_eq!(parse_icount("0x10", 0, 100), Ok(16));
        assert_eq!(parse_icount("50%", 0, 1000), Ok(500));
        assert_eq!(parse_icount("+5", 10, 100), Ok(15));
        assert_eq!(parse_icount("-50", 10, 100), Ok(0));
        assert_eq!(parse_icount("2k", 0, 5000), Ok(2000));
        assert!(parse_icount("101", 0, 100).is_err());
        assert!(parse_icount("abc", 0, 100).is_err());
        assert!(parse_icount("", 0, 100).is_err());
        assert!(parse_icount("150%", 0, 100).is_err());
    }

    #[test]
    fn addresses_and_targets() {
        let s = Symbols::empty();
        assert_eq!(parse_address("0x1000", &s), Ok(0x1000));
        assert!(parse_address("kmain", &s).is_err());
        let m = parse_mem_target("rsp+0x10", &s).unwrap_or_default();
        assert_eq!((m.reg, m.offset), (Some(Reg::Rsp), 0x10));
        let m = parse_mem_target("RBP-8", &s).unwrap_or_default();
        assert_eq!((m.reg, m.offset), (Some(Reg::Rbp), 8u64.wrapping_neg()));
        let m = parse_mem_target("0xb8000", &s).unwrap_or_default();
        assert_eq!((m.reg, m.offset), (None, 0xb8000));
    }

    #[test]
    fn watchpoints_and_numbers() {
        let s = Symbols::empty();
        let w = |addr, len, kind| Ok((Watchpoint { addr, len, kind }, format!("{addr:#x}")));
        assert_eq!(parse_watch("0x1000", &s), w(0x1000, 8, WatchKind::Write));
        assert_eq!(parse_watch("read 0x1000 4", &s), w(0x1000, 4, WatchKind::Read));
        assert_eq!(parse_watch("a 0x1000 0x10", &s), w(0x1000, 16, WatchKind::Access));
        assert_eq!(parse_watch("  write   0x1000  ", &s), w(0x1000, 8, WatchKind::Write));
        assert!(parse_watch("0x1000 0", &s).is_err_and(|e| e.contains("at least one byte")));
        assert!(parse_watch("read 0x1000 4 5", &s).is_err_and(|e| e.contains("ADDRESS [LEN]")));
        assert!(parse_watch("read", &s).is_err(), "a lone kind is read as an address");
        assert!(parse_watch("0x1000 four", &s).is_err_and(|e| e.contains("not a length")));
        assert_eq!(parse_ids("1 3,4"), Ok(Some(vec![1, 3, 4])));
        assert_eq!(parse_ids("all"), Ok(None));
        assert!(parse_ids("").is_err() && parse_ids("kmain").is_err());
    }
}
