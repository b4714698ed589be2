//! Kernel command line: space-separated `key=value` tokens and bare flags,
//! read from `hvm_start_info.cmdline_paddr`.
use crate::boot::{HvmStartInfo, HVM_START_MAGIC};

#[derive(Clone, Copy)]
pub struct Cmdline {
    s: &'static str,
}

static mut CMDLINE: Cmdline = Cmdline { s: "" };

pub(crate) fn init(info: &'static HvmStartInfo) -> Cmdline {
    let c = Cmdline::from_start_info(info);
    unsafe { CMDLINE = c };
    c
}

/// The command line parsed by [`crate::init`].
pub fn get() -> Cmdline {
    unsafe { CMDLINE }
}

impl Cmdline {
    pub fn from_start_info(info: &'static HvmStartInfo) -> Cmdline {
        if info.magic != HVM_START_MAGIC || info.cmdline_paddr == 0 {
            return Cmdline { s: "" };
        }
        let p = info.cmdline_paddr as *const u8;
        let mut n = 0;
        // NUL-terminated; bounded so a bad pointer cannot run away.
        while n < 4096 && unsafe { p.add(n).read() } != 0 {
            n += 1;
        }
        let bytes = unsafe { core::slice::from_raw_parts(p, n) };
        Cmdline { s: core::str::from_utf8(bytes).unwrap_or("").trim() }
    }

    pub const fn from_str(s: &'static str) -> Cmdline {
        Cmdline { s }
    }

    pub fn as_str(&self) -> &'static str {
        self.s
    }

    /// Value of the first `key=value` token.
    pub fn get(&self, key: &str) -> Option<&'static str> {
        self.s.split_ascii_whitespace().find_map(|t| match t.split_once('=') {
            Some((k, v)) if k == key => Some(v),
            _ => None,
        })
    }

    /// True for a bare `key` token, or `key=1|yes|true|on`.
    pub fn flag(&self, key: &str) -> bool {
        self.s.split_ascii_whitespace().any(|t| match t.split_once('=') {
            None => t == key,
            Some((k, v)) => k == key && matches!(v, "1" | "yes" | "true" | "on"),
        })
    }

    /// Numeric value (decimal, or hex with `0x`); `default` if absent.
    /// Panics on a malformed value rather than silently using the default.
    pub fn u64(&self, key: &str, default: u64) -> u64 {
        match self.get(key) {
            None => default,
            Some(v) => parse_u64(v).unwrap_or_else(|| panic!("cmdline: bad number {}={}", key, v)),
        }
    }
}

pub fn parse_u64(v: &str) -> Option<u64> {
    match v.strip_prefix("0x").or_else(|| v.strip_prefix("0X")) {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => v.parse().ok(),
    }
}
