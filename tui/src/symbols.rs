//! Symbols and source lines of the kernel embedded in the trace header, parsed in memory: the
//! trace is self-contained, so the UI never needs the kernel file the developer recorded
//! from, and what it shows is exactly the image that ran.

use std::collections::HashMap;
use std::rc::Rc;

use object::{Object, ObjectSection, ObjectSymbol, SymbolKind};

type Reader = gimli::EndianRcSlice<gimli::RunTimeEndian>;

/// Why the kernel's symbols could not be read (the UI then shows bare addresses).
#[derive(Debug, thiserror::Error)]
pub enum SymbolsError {
    /// Not an ELF (or another object format) `object` can parse.
    #[error("the kernel image is not a readable ELF: {0}")]
    Object(#[from] object::Error),
    /// DWARF present but unreadable.
    #[error("the kernel's DWARF is unreadable: {0}")]
    Dwarf(#[from] gimli::Error),
}

/// A named address range.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Symbol {
    /// Start address.
    pub addr: u64,
    /// Size in bytes (0 for assembly labels, which then extend to the next symbol).
    pub size: u64,
    /// Demangled name without the hash suffix.
    pub name: String,
}

/// The kernel's symbol table and line table.
#[derive(Default)]
pub struct Symbols {
    code: Vec<Symbol>,
    data: Vec<Symbol>,
    by_name: HashMap<String, u64>,
    lines: Option<addr2line::Context<Reader>>,
}

impl std::fmt::Debug for Symbols {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Symbols")
            .field("code", &self.code.len())
            .field("data", &self.data.len())
            .field("lines", &self.lines.is_some())
            .finish()
    }
}

fn demangle(raw: &str) -> String {
    format!("{:#}", rustc_demangle::demangle(raw))
}

fn nearest(list: &[Symbol], addr: u64) -> Option<(&Symbol, u64)> {
    let k = list.partition_point(|s| s.addr <= addr).checked_sub(1)?;
    let s = &list[k];
    let off = addr - s.addr;
    let next = list.get(k + 1).map(|n| n.addr).unwrap_or(u64::MAX);
    // Sized symbols cover exactly their size; labels run to the next symbol.
    let inside = if s.size > 0 { off < s.size } else { addr < next && off < 1 << 16 };
    inside.then_some((s, off))
}

impl Symbols {
    /// No symbols: addresses are shown bare.
    pub fn empty() -> Self {
        Self::default()
    }

    /// Names from a System.map or ELF symbol table given with `--symbols` (no source lines):
    /// for kernels whose image carries no symbols, such as a distribution's bzImage.
    pub fn from_table(table: &ttvm_vmm::symbols::SymbolTable) -> Self {
        let mut code = Vec::new();
        let mut data = Vec::new();
        let mut by_name = HashMap::new();
        for s in table.symbols() {
            let sym = Symbol { addr: s.addr, size: s.size, name: demangle(&s.name) };
            by_name.insert(s.name.clone(), s.addr);
            by_name.insert(sym.name.clone(), s.addr);
            if matches!(s.kind.to_ascii_lowercase(), 't' | 'w') {
                code.push(sym);
            } else {
                data.push(sym);
            }
        }
        for list in [&mut code, &mut data] {
            list.sort_by(|a, b| a.addr.cmp(&b.addr).then(b.size.cmp(&a.size)));
            list.dedup_by_key(|s| s.addr);
        }
        Self { code, data, by_name, lines: None }
    }

    /// Parses the symbol table and DWARF line table of an ELF image.
    pub fn parse(elf: &[u8]) -> Result<Self, SymbolsError> {
        let file = object::File::parse(elf)?;
        let mut code = Vec::new();
        let mut data = Vec::new();
        let mut by_name = HashMap::new();
        for s in file.symbols() {
            let Ok(raw) = s.name() else { continue };
            if raw.is_empty() || s.is_undefined() || s.address() == 0 {
                continue;
            }
            let name = demangle(raw);
            let sym = Symbol { addr: s.address(), size: s.size(), name: name.clone() };
            match s.kind() {
                SymbolKind::Text => code.push(sym),
                SymbolKind::Data | SymbolKind::Unknown => data.push(sym),
                _ => continue,
            }
            by_name.insert(raw.to_string(), s.address());
            by_name.insert(name, s.address());
        }
        // At one address keep the sized symbol: it says where the function ends.
        for list in [&mut code, &mut data] {
            list.sort_by(|a, b| a.addr.cmp(&b.addr).then(b.size.cmp(&a.size)));
            list.dedup_by_key(|s| s.addr);
        }
        let lines = Self::load_lines(&file)?;
        Ok(Self { code, data, by_name, lines })
    }

    fn load_lines(file: &object::File<'_>) -> Result<Option<addr2line::Context<Reader>>, SymbolsError> {
        if file.section_by_name(".debug_line").is_none() {
            return Ok(None);
        }
        let endian = if file.is_little_endian() { gimli::RunTimeEndian::Little } else { gimli::RunTimeEndian::Big };
        let dwarf = gimli::Dwarf::load(|id| -> Result<Reader, gimli::Error> {
            let bytes: Rc<[u8]> = match file.section_by_name(id.name()).map(|s| s.uncompressed_data()) {
                Some(Ok(d)) => Rc::from(&*d),
                _ => Rc::from(&[][..]),
            };
            Ok(gimli::EndianRcSlice::new(bytes, endian))
        })?;
        Ok(Some(addr2line::Context::from_dwarf(dwarf)?))
    }

    /// Whether a symbol table was found.
    pub fn is_empty(&self) -> bool {
        self.code.is_empty() && self.data.is_empty()
    }

    /// The function containing `addr` and the offset into it.
    pub fn function(&self, addr: u64) -> Option<(&Symbol, u64)> {
        nearest(&self.code, addr)
    }

    /// `name+0xoff` for a code or data address.
    pub fn describe(&self, addr: u64) -> Option<String> {
        let (s, off) = nearest(&self.code, addr).or_else(|| nearest(&self.data, addr))?;
        Some(if off == 0 { s.name.clone() } else { format!("{}+{off:#x}", s.name) })
    }

    /// Source `file:line` of `addr` (the file as its last two path components): the line
    /// of the innermost inlined function, as gdb's frame #0 shows it.
    pub fn location(&self, addr: u64) -> Option<String> {
        self.locations(addr).into_iter().next()
    }

    /// Source lines of `addr` from the innermost inlined function out to the function the
    /// symbol table names (one entry when nothing is inlined there).
    pub fn locations(&self, addr: u64) -> Vec<String> {
        let Some(ctx) = self.lines.as_ref() else { return Vec::new() };
        let mut out = Vec::new();
        if let Ok(mut frames) = ctx.find_frames(addr).skip_all_loads() {
            while let Ok(Some(f)) = frames.next() {
                if let Some(s) = f.location.as_ref().and_then(short_location) {
                    out.push(s);
                }
            }
        }
        if out.is_empty() {
            if let Some(s) = ctx.find_location(addr).ok().flatten().as_ref().and_then(short_location) {
                out.push(s);
            }
        }
        out
    }

    /// The address of a symbol named `name`: its raw or demangled name, or a unique
    /// demangled name ending in `::name`.
    pub fn resolve(&self, name: &str) -> Option<u64> {
        if let Some(&a) = self.by_name.get(name) {
            return Some(a);
        }
        let suffix = format!("::{name}");
        let mut hits = self.code.iter().chain(&self.data).filter(|s| s.name.ends_with(&suffix));
        let first = hits.next()?;
        hits.all(|s| s.addr == first.addr).then_some(first.addr)
    }
}

fn short_location(loc: &addr2line::Location<'_>) -> Option<String> {
    let file = loc.file?;
    let parts: Vec<&str> = file.rsplit('/').take(2).collect();
    let short = parts.into_iter().rev().collect::<Vec<_>>().join("/");
    Some(match loc.line {
        Some(l) => format!("{short}:{l}"),
        None => short,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(Symbols::parse(b"not an elf").is_err());
        let s = Symbols::empty();
        assert!(s.is_empty());
        assert_eq!(s.describe(0x1000), None);
        assert_eq!(s.location(0x1000), None);
    }

    #[test]
    fn labels_extend_to_the_next_symbol() {
        let code = vec![
            Symbol { addr: 0x100, size: 0, name: "label".into() },
            Symbol { addr: 0x200, size: 0x10, name: "f".into() },
        ];
        assert_eq!(nearest(&code, 0x1ff).map(|(s, o)| (s.name.as_str(), o)), Some(("label", 0xff)));
        assert_eq!(nearest(&code, 0x20f).map(|(s, o)| (s.name.as_str(), o)), Some(("f", 0xf)));
        assert_eq!(nearest(&code, 0x210), None);
        assert_eq!(nearest(&code, 0x50), None);
    }

    #[test]
    fn a_system_map_names_functions_and_resolves_names() {
        let map = "ffffffff81000000 T _stext\nffffffff81000100 t start_kernel\nffffffff82000000 D jiffies\n";
        let table = ttvm_vmm::symbols::SymbolTable::from_system_map(map).unwrap();
        let s = Symbols::from_table(&table);
        assert!(!s.is_empty());
        assert_eq!(s.describe(0xffff_ffff_8100_0104).as_deref(), Some("start_kernel+0x4"));
        assert_eq!(s.resolve("jiffies"), Some(0xffff_ffff_8200_0000));
        assert_eq!(s.location(0xffff_ffff_8100_0104), None, "no source lines from a System.map");
    }
}
