//! Formatting that never runs `core`'s integer or padding code.
//!
//! Why: on hosts where KVM runs guest ring-0 code through its instruction
//! emulator (PVM-style nested setups, like ttvm's CI machines), only SSE
//! *moves* can be emulated. The precompiled `core`'s integer formatting and
//! `Formatter::pad`/`pad_integral` use `movd`, `pinsrw`, `pxor`, ... and
//! stop the VM with an emulation failure. So `print!`, `println!` and
//! `panic!` from this crate wrap every argument in [`W`], whose
//! Display/Debug/LowerHex/UpperHex impls format digits and padding here
//! (this crate is built without SSE) and hand only finished strings to
//! `Formatter::write_str`.
//!
//! Supported: integers, bool, char, str, raw pointers; `{}`, `{:?}`, `{:x}`,
//! `{:X}`, `{:#x}`, width, `0` flag, `<`/`>` alignment. Do not use inline
//! captures (`{name}`): those bypass the wrapper.
use core::fmt::{self, Alignment, Formatter};

/// Wraps a macro argument so our own formatting code is used.
pub struct W<'a, T: ?Sized>(pub &'a T);

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Display,
    Debug,
    LowerHex,
    UpperHex,
}

/// A value our formatter understands.
pub trait Arg {
    fn fmt_arg(&self, f: &mut Formatter, kind: Kind) -> fmt::Result;
}

impl<T: Arg + ?Sized> fmt::Display for W<'_, T> {
    fn fmt(&self, f: &mut Formatter) -> fmt::Result {
        self.0.fmt_arg(f, Kind::Display)
    }
}
impl<T: Arg + ?Sized> fmt::Debug for W<'_, T> {
    fn fmt(&self, f: &mut Formatter) -> fmt::Result {
        self.0.fmt_arg(f, Kind::Debug)
    }
}
impl<T: Arg + ?Sized> fmt::LowerHex for W<'_, T> {
    fn fmt(&self, f: &mut Formatter) -> fmt::Result {
        self.0.fmt_arg(f, Kind::LowerHex)
    }
}
impl<T: Arg + ?Sized> fmt::UpperHex for W<'_, T> {
    fn fmt(&self, f: &mut Formatter) -> fmt::Result {
        self.0.fmt_arg(f, Kind::UpperHex)
    }
}

/// Writes `n` copies of `c`.
fn fill(f: &mut Formatter, c: char, n: usize) -> fmt::Result {
    let mut b = [0u8; 4];
    let s = c.encode_utf8(&mut b);
    for _ in 0..n {
        f.write_str(s)?;
    }
    Ok(())
}

/// Writes `parts` (already formatted) padded to the formatter's width.
/// `numeric`: right-aligned by default, and the `0` flag pads after `prefix`.
fn padded(f: &mut Formatter, prefix: &str, body: &str, numeric: bool) -> fmt::Result {
    // Not `chars().count()`: that is core's SSE-vectorised counter.
    let len = prefix.len() + body.bytes().filter(|b| b & 0xC0 != 0x80).count();
    let pad = f.width().unwrap_or(0).saturating_sub(len);
    if pad == 0 {
        f.write_str(prefix)?;
        return f.write_str(body);
    }
    if numeric && f.sign_aware_zero_pad() {
        f.write_str(prefix)?;
        fill(f, '0', pad)?;
        return f.write_str(body);
    }
    let align = f.align().unwrap_or(if numeric { Alignment::Right } else { Alignment::Left });
    let (before, after) = match align {
        Alignment::Left => (0, pad),
        Alignment::Right => (pad, 0),
        Alignment::Center => (pad / 2, pad - pad / 2),
    };
    let c = f.fill();
    fill(f, c, before)?;
    f.write_str(prefix)?;
    f.write_str(body)?;
    fill(f, c, after)
}

fn int(f: &mut Formatter, negative: bool, mut v: u64, kind: Kind) -> fmt::Result {
    let (radix, digits): (u64, &[u8; 16]) = match kind {
        Kind::LowerHex => (16, b"0123456789abcdef"),
        Kind::UpperHex => (16, b"0123456789ABCDEF"),
        Kind::Display | Kind::Debug => (10, b"0123456789abcdef"),
    };
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = digits[(v % radix) as usize];
        v /= radix;
        if v == 0 {
            break;
        }
    }
    let prefix = match (negative, radix == 16 && f.alternate()) {
        (true, true) => "-0x",
        (true, false) => "-",
        (false, true) => "0x",
        (false, false) => "",
    };
    // Only ASCII digits were written.
    let body = unsafe { core::str::from_utf8_unchecked(&buf[i..]) };
    padded(f, prefix, body, true)
}

macro_rules! unsigned {
    ($($t:ty)*) => {$(
        impl Arg for $t {
            fn fmt_arg(&self, f: &mut Formatter, kind: Kind) -> fmt::Result {
                int(f, false, *self as u64, kind)
            }
        }
    )*};
}
macro_rules! signed {
    ($($t:ty as $u:ty)*) => {$(
        impl Arg for $t {
            fn fmt_arg(&self, f: &mut Formatter, kind: Kind) -> fmt::Result {
                match kind {
                    // Hex shows the two's complement bits, like core does.
                    Kind::LowerHex | Kind::UpperHex => int(f, false, *self as $u as u64, kind),
                    _ => int(f, *self < 0, self.unsigned_abs() as u64, kind),
                }
            }
        }
    )*};
}
unsigned!(u8 u16 u32 u64 usize);
signed!(i8 as u8 i16 as u16 i32 as u32 i64 as u64 isize as usize);

impl Arg for str {
    fn fmt_arg(&self, f: &mut Formatter, kind: Kind) -> fmt::Result {
        if kind == Kind::Debug {
            f.write_str("\"")?;
            f.write_str(self)?;
            return f.write_str("\"");
        }
        padded(f, "", self, false)
    }
}

impl Arg for bool {
    fn fmt_arg(&self, f: &mut Formatter, _: Kind) -> fmt::Result {
        padded(f, "", if *self { "true" } else { "false" }, false)
    }
}

impl Arg for char {
    fn fmt_arg(&self, f: &mut Formatter, _: Kind) -> fmt::Result {
        let mut b = [0u8; 4];
        padded(f, "", self.encode_utf8(&mut b), false)
    }
}

impl<T: ?Sized> Arg for *const T {
    fn fmt_arg(&self, f: &mut Formatter, _: Kind) -> fmt::Result {
        f.write_str("0x")?;
        int(f, false, *self as *const u8 as u64, Kind::LowerHex)
    }
}

impl<T: ?Sized> Arg for *mut T {
    fn fmt_arg(&self, f: &mut Formatter, kind: Kind) -> fmt::Result {
        (*self as *const T).fmt_arg(f, kind)
    }
}

impl<T: Arg + ?Sized> Arg for &T {
    fn fmt_arg(&self, f: &mut Formatter, kind: Kind) -> fmt::Result {
        (**self).fmt_arg(f, kind)
    }
}

impl<T: Arg + ?Sized> Arg for &mut T {
    fn fmt_arg(&self, f: &mut Formatter, kind: Kind) -> fmt::Result {
        (**self).fmt_arg(f, kind)
    }
}
