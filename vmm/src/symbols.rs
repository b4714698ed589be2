//! Kernel symbol tables for showing function names (`--symbols PATH`): a `System.map`
//! (`ADDRESS TYPE NAME` lines, as Linux builds write it) or an ELF with a symbol table (a
//! `vmlinux` with symbols, a sample kernel). Lookups map an address to `name+offset`.

use std::path::Path;

/// Errors loading symbols. All are about the user's file: the CLI reports them as bad input.
#[derive(Debug, thiserror::Error)]
pub enum SymbolError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The path.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A System.map line is malformed.
    #[error("System.map line {line}: {message}")]
    BadLine {
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// Debian's `/boot/System.map-*` is a one-line placeholder.
    #[error(
        "this System.map is Debian's placeholder (\"{0}\"): Debian ships the real one in the \
         linux-image-*-dbg package, at /usr/lib/debug/boot/System.map-*"
    )]
    DebianPlaceholder(String),
    /// An ELF that could not be parsed.
    #[error("not a valid ELF: {0}")]
    BadElf(String),
    /// An ELF, or a bzImage's kernel, without a symbol table.
    #[error(
        "{0} has no symbol table (distribution kernels are stripped: use the System.map or \
         the vmlinux with debug symbols, e.g. from Debian's linux-image-*-dbg package)"
    )]
    NoSymbols(String),
    /// The symbols describe another build of the kernel.
    #[error("these symbols are not the kernel's: {0}")]
    OtherKernel(String),
    /// Neither a System.map nor an ELF.
    #[error("neither a System.map (ADDRESS TYPE NAME lines) nor an ELF file")]
    UnknownFormat,
}

/// One symbol.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Symbol {
    /// Address (kernel virtual).
    pub addr: u64,
    /// Size in bytes, 0 when unknown (System.map has no sizes).
    pub size: u64,
    /// System.map type letter (`T` global text, `t` local text, `D` data, ...).
    pub kind: char,
    /// Name.
    pub name: String,
}

/// Symbols sorted by address.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SymbolTable {
    symbols: Vec<Symbol>,
}

/// Without a size, an address more than this past the last symbol is not attributed to it.
const MAX_UNSIZED_TAIL: u64 = 1 << 20;

impl SymbolTable {
    /// Loads a System.map or an ELF (or a bzImage, whose kernel ELF is searched).
    pub fn load(path: &Path) -> Result<Self, SymbolError> {
        let bytes =
            std::fs::read(path).map_err(|source| SymbolError::Read { path: path.display().to_string(), source })?;
        Self::parse(&bytes, &path.display().to_string())
    }

    /// Parses file contents; `what` names the file in messages.
    pub fn parse(bytes: &[u8], what: &str) -> Result<Self, SymbolError> {
        if bytes.starts_with(b"\x7fELF") {
            return Self::from_elf(bytes, what);
        }
        if crate::boot::bzimage::is_bzimage(bytes) {
            let elf = crate::boot::bzimage::BzImage::parse(bytes)
                .and_then(|b| b.decompress())
                .map_err(|e| SymbolError::BadElf(e.to_string()))?;
            return Self::from_elf(&elf, &format!("the kernel inside {what}"));
        }
        match std::str::from_utf8(bytes) {
            Ok(text) => Self::from_system_map(text),
            Err(_) => Err(SymbolError::UnknownFormat),
        }
    }

    /// Parses `System.map` text.
    pub fn from_system_map(text: &str) -> Result<Self, SymbolError> {
        let mut symbols = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() {
                continue;
            }
            let mut parts = line.splitn(3, char::is_whitespace);
            let (Some(addr), Some(kind), Some(name)) = (parts.next(), parts.next(), parts.next()) else {
                if i == 0 {
                    return Err(SymbolError::UnknownFormat);
                }
                return Err(SymbolError::BadLine {
                    line: i + 1,
                    message: format!("expected ADDRESS TYPE NAME: {line:?}"),
                });
            };
            let name = name.trim();
            if name.contains(char::is_whitespace) {
                if line.contains("System.map") && line.contains("-dbg") {
                    return Err(SymbolError::DebianPlaceholder(line.to_string()));
                }
                return Err(SymbolError::BadLine {
                    line: i + 1,
                    message: format!("symbol name with spaces: {name:?}"),
                });
            }
            let addr = u64::from_str_radix(addr, 16).map_err(|_| {
                if i == 0 {
                    SymbolError::UnknownFormat
                } else {
                    SymbolError::BadLine { line: i + 1, message: format!("bad hexadecimal address {addr:?}") }
                }
            })?;
            let mut kinds = kind.chars();
            let (Some(kind), None) = (kinds.next(), kinds.next()) else {
                return Err(SymbolError::BadLine { line: i + 1, message: format!("bad type {kind:?}") });
            };
            // Absolute symbols (per-CPU offsets, constants) are not code or data addresses.
            // Undefined weak symbols sit at 0.
            if matches!(kind, 'a' | 'A' | 'U') || (matches!(kind, 'w' | 'v') && addr == 0) {
                continue;
            }
            symbols.push(Symbol { addr, size: 0, kind, name: name.to_string() });
        }
        Ok(Self::from_symbols(symbols))
    }

    /// Reads the ELF symbol table (`.symtab`, else `.dynsym`).
    pub fn from_elf(bytes: &[u8], what: &str) -> Result<Self, SymbolError> {
        use object::{Object, ObjectSymbol, SymbolKind};
        let file = object::File::parse(bytes).map_err(|e| SymbolError::BadElf(e.to_string()))?;
        let mut symbols = Vec::new();
        for s in file.symbols().chain(file.dynamic_symbols()) {
            let kind = match s.kind() {
                SymbolKind::Text => 't',
                SymbolKind::Data => 'd',
                _ => continue,
            };
            let (Ok(name), addr) = (s.name(), s.address()) else { continue };
            if name.is_empty() || addr == 0 || s.is_undefined() {
                continue;
            }
            let kind = if s.is_global() { kind.to_ascii_uppercase() } else { kind };
            symbols.push(Symbol { addr, size: s.size(), kind, name: name.to_string() });
        }
        if symbols.is_empty() {
            return Err(SymbolError::NoSymbols(what.to_string()));
        }
        Ok(Self::from_symbols(symbols))
    }

    /// Builds a table; at equal addresses global symbols come first.
    pub fn from_symbols(mut symbols: Vec<Symbol>) -> Self {
        drop_zero_based_per_cpu(&mut symbols);
        symbols.sort_by(|a, b| {
            a.addr
                .cmp(&b.addr)
                .then(b.kind.is_ascii_uppercase().cmp(&a.kind.is_ascii_uppercase()))
                .then(a.name.cmp(&b.name))
        });
        symbols.dedup_by(|b, a| a.addr == b.addr && a.name == b.name);
        Self { symbols }
    }

    /// Checks that the table was made for `image` (the kernel ELF or bzImage that runs), so
    /// a System.map of another build cannot name functions wrongly: Linux's `linux_banner`
    /// must point at "Linux version" in the image. A table without that symbol (a sample
    /// kernel) is not checked.
    pub fn check_kernel(&self, image: &[u8]) -> Result<(), SymbolError> {
        let Some(banner) = self.address_of("linux_banner") else { return Ok(()) };
        let elf;
        let elf_bytes = if crate::boot::bzimage::is_bzimage(image) {
            elf = crate::boot::bzimage::BzImage::parse(image)
                .and_then(|b| b.decompress())
                .map_err(|e| SymbolError::BadElf(e.to_string()))?;
            &elf[..]
        } else {
            image
        };
        const BANNER: &[u8] = b"Linux version ";
        match bytes_at(elf_bytes, banner, BANNER.len()) {
            Some(b) if b == BANNER => Ok(()),
            Some(_) => Err(SymbolError::OtherKernel(format!(
                "linux_banner is at {banner:#x} in them, but the kernel's \"Linux version\" string is not there \
                 (a System.map of another build or version?)"
            ))),
            None => Err(SymbolError::OtherKernel(format!(
                "linux_banner is at {banner:#x} in them, which is not in the kernel's loaded segments"
            ))),
        }
    }

    /// Number of symbols.
    pub fn len(&self) -> usize {
        self.symbols.len()
    }

    /// Whether the table is empty.
    pub fn is_empty(&self) -> bool {
        self.symbols.is_empty()
    }

    /// All symbols, sorted by address.
    pub fn symbols(&self) -> &[Symbol] {
        &self.symbols
    }

    /// The symbol containing `addr` and the offset into it: the nearest symbol at or below
    /// `addr`, if `addr` is within its size (when known).
    pub fn lookup(&self, addr: u64) -> Option<(&str, u64)> {
        let i = self.symbols.partition_point(|s| s.addr <= addr).checked_sub(1)?;
        // Among symbols at the same address the first (global) one is preferred.
        let first = self.symbols[..=i].partition_point(|s| s.addr < self.symbols[i].addr);
        let s = &self.symbols[first];
        let offset = addr - s.addr;
        let in_range =
            if s.size > 0 { offset < s.size } else { i + 1 < self.symbols.len() || offset < MAX_UNSIZED_TAIL };
        in_range.then_some((s.name.as_str(), offset))
    }

    /// The address of the symbol `name` (the first one when names repeat).
    pub fn address_of(&self, name: &str) -> Option<u64> {
        self.symbols.iter().find(|s| s.name == name).map(|s| s.addr)
    }

    /// `addr` as `name+0xoff`, or `None` when no symbol covers it.
    pub fn describe(&self, addr: u64) -> Option<String> {
        self.lookup(addr).map(|(n, off)| if off == 0 { n.to_string() } else { format!("{n}+{off:#x}") })
    }
}

/// `len` bytes of an ELF's loaded image at virtual address `addr`, if a segment holds them.
fn bytes_at(elf: &[u8], addr: u64, len: usize) -> Option<&[u8]> {
    use object::{Object, ObjectSegment};
    let file = object::File::parse(elf).ok()?;
    file.segments().find_map(|seg| {
        let off = addr.checked_sub(seg.address())?;
        let data = seg.data().ok()?;
        let start = usize::try_from(off).ok()?;
        data.get(start..start.checked_add(len)?)
    })
}

/// x86-64 Linux links its per-CPU variables at offsets from 0 (`__per_cpu_start` = 0 up to
/// `__per_cpu_end`): they are offsets into each CPU's copy, not addresses, and naming a
/// null or small pointer `fixed_percpu_data+0x10` would mislead.
fn drop_zero_based_per_cpu(symbols: &mut Vec<Symbol>) {
    let at = |name: &str| symbols.iter().find(|s| s.name == name).map(|s| s.addr);
    if let (Some(0), Some(end)) = (at("__per_cpu_start"), at("__per_cpu_end")) {
        symbols.retain(|s| s.addr >= end && s.name != "__per_cpu_end");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAP: &str = "\
0000000000000000 A __per_cpu_start
ffffffff81000000 T _stext
ffffffff81000000 t startup_64
ffffffff81000100 T do_one_initcall
ffffffff81000200 t helper
ffffffff82000000 D some_data
";

    #[test]
    fn system_map_lookup() {
        let t = SymbolTable::from_system_map(MAP).unwrap();
        assert_eq!(t.len(), 5, "absolute symbols are skipped");
        assert_eq!(t.lookup(0xffff_ffff_8100_0000), Some(("_stext", 0)));
        assert_eq!(t.lookup(0xffff_ffff_8100_0105), Some(("do_one_initcall", 5)));
        assert_eq!(t.describe(0xffff_ffff_8100_0210).as_deref(), Some("helper+0x10"));
        assert_eq!(t.lookup(0x1000), None);
        assert_eq!(t.lookup(0xffff_ffff_8200_0010), Some(("some_data", 0x10)));
        assert_eq!(t.lookup(0xffff_ffff_9000_0000), None, "far past the last symbol");
        assert_eq!(t.address_of("helper"), Some(0xffff_ffff_8100_0200));
    }

    #[test]
    fn zero_based_per_cpu_symbols_name_no_address() {
        let map = "\
0000000000000000 D __per_cpu_start
0000000000000000 D fixed_percpu_data
0000000000035000 D __per_cpu_end
ffffffff81000000 T _stext
";
        let t = SymbolTable::from_system_map(map).unwrap();
        assert_eq!(t.len(), 1, "{t:?}");
        assert_eq!(t.lookup(0x10), None);
        assert_eq!(t.lookup(0xffff_ffff_8100_0004), Some(("_stext", 4)));
        // Data at low addresses in a kernel that does not link per-CPU data at 0 stays.
        let t = SymbolTable::from_system_map("0000000000001000 D early_data\n").unwrap();
        assert_eq!(t.lookup(0x1008), Some(("early_data", 8)));
    }

    #[test]
    fn debian_placeholder_and_garbage_are_explained() {
        let e = SymbolTable::parse(
            b"ffffffffffffffff B The real System.map is in the linux-image-<version>-dbg package\n",
            "System.map",
        )
        .unwrap_err();
        assert!(matches!(e, SymbolError::DebianPlaceholder(_)), "{e}");
        assert!(e.to_string().contains("-dbg"));
        let e = SymbolTable::parse(b"ffffffff81000000 T ok\nnot-hex T x\n", "m").unwrap_err();
        assert!(matches!(e, SymbolError::BadLine { line: 2, .. }), "{e}");
        assert!(matches!(SymbolTable::parse(b"\x00\xff\xfe", "m"), Err(SymbolError::UnknownFormat)));
        assert!(matches!(SymbolTable::parse(b"hello world\n", "m"), Err(SymbolError::UnknownFormat)));
        assert!(matches!(SymbolTable::parse(b"\x7fELF garbage", "m"), Err(SymbolError::BadElf(_))));
    }

    #[test]
    fn elf_symbols_with_sizes() {
        // This test binary itself is an ELF with a symbol table.
        let exe = std::env::current_exe().unwrap();
        let t = SymbolTable::load(&exe).unwrap();
        assert!(t.len() > 100);
        let addr = t.address_of("main").expect("main in the test binary");
        assert_eq!(t.lookup(addr).map(|(n, o)| (n.to_string(), o)), Some(("main".to_string(), 0)));
        let sized = t.symbols().iter().find(|s| s.size > 4 && t.lookup(s.addr + s.size - 1).is_some()).unwrap();
        assert_eq!(t.lookup(sized.addr + 1).map(|(_, o)| o), Some(1));
    }
}
