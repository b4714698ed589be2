//! A small, strict reader of ELF64 headers, so a bad kernel gets a precise message before
//! linux-loader touches guest memory.

use super::BootError;
use crate::layout::HIMEM_START;

const PT_LOAD: u32 = 1;
const PT_NOTE: u32 = 4;
/// XEN_ELFNOTE_PHYS32_ENTRY: the PVH 32-bit entry point.
const XEN_ELFNOTE_PHYS32_ENTRY: u32 = 18;

/// One loadable segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LoadSegment {
    /// Guest-physical load address.
    pub paddr: u64,
    /// Size in memory.
    pub memsz: u64,
}

/// What ttvm needs to know about an ELF kernel before loading it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ElfSummary {
    /// ELF entry point (the 64-bit or native entry; PVH uses its own note).
    pub entry: u64,
    /// PT_LOAD segments.
    pub segments: Vec<LoadSegment>,
    /// The PVH entry from the Xen note, if present.
    pub pvh_entry: Option<u64>,
    /// Whether a PVH entry note is present.
    pub has_pvh_note: bool,
    /// Whether the ELF carries a note owned by "Linux" (every vmlinux does): such a kernel
    /// without a PVH note can still boot through the 64-bit Linux boot protocol.
    pub linux_note: bool,
}

fn bad(msg: impl Into<String>) -> BootError {
    BootError::NotLoadable(msg.into())
}

fn u16_at(b: &[u8], off: usize) -> Result<u16, BootError> {
    b.get(off..off + 2)
        .map(|s| u16::from_le_bytes([s[0], s[1]]))
        .ok_or_else(|| bad(format!("file truncated at offset {off:#x}")))
}

fn u32_at(b: &[u8], off: usize) -> Result<u32, BootError> {
    b.get(off..off + 4)
        .map(|s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
        .ok_or_else(|| bad(format!("file truncated at offset {off:#x}")))
}

fn u64_at(b: &[u8], off: usize) -> Result<u64, BootError> {
    b.get(off..off + 8)
        .map(|s| {
            let mut a = [0u8; 8];
            a.copy_from_slice(s);
            u64::from_le_bytes(a)
        })
        .ok_or_else(|| bad(format!("file truncated at offset {off:#x}")))
}

impl ElfSummary {
    /// Parses and validates the ELF header and program headers of `image`.
    pub fn parse(image: &[u8]) -> Result<Self, BootError> {
        if image.len() < 64 || &image[..4] != b"\x7fELF" {
            return Err(bad("the file does not start with the ELF magic \\x7fELF"));
        }
        if image[4] != 2 {
            return Err(bad("not a 64-bit ELF (EI_CLASS is not ELFCLASS64)"));
        }
        if image[5] != 1 {
            return Err(bad("not a little-endian ELF"));
        }
        let e_type = u16_at(image, 16)?;
        if e_type != 2 {
            return Err(bad(format!("ELF type {e_type} is not an executable (ET_EXEC)")));
        }
        let machine = u16_at(image, 18)?;
        if machine != 62 {
            return Err(bad(format!("ELF machine {machine} is not x86-64 (62)")));
        }
        let entry = u64_at(image, 24)?;
        let phoff = u64_at(image, 32)? as usize;
        let phentsize = u16_at(image, 54)? as usize;
        let phnum = u16_at(image, 56)? as usize;
        if phnum == 0 {
            return Err(bad("the ELF has no program headers"));
        }
        if phentsize < 56 {
            return Err(bad(format!("program header size {phentsize} is too small")));
        }
        let table_end = phoff
            .checked_add(phentsize.checked_mul(phnum).ok_or_else(|| bad("program header table overflows"))?)
            .ok_or_else(|| bad("program header table overflows"))?;
        if table_end > image.len() {
            return Err(bad(format!(
                "program header table ({phoff:#x}..{table_end:#x}) extends past the end of the file ({:#x} bytes)",
                image.len()
            )));
        }
        let mut segments = Vec::new();
        let mut pvh_entry = None;
        let mut linux_note = false;
        for i in 0..phnum {
            let ph = phoff + i * phentsize;
            let p_type = u32_at(image, ph)?;
            let offset = u64_at(image, ph + 8)?;
            let paddr = u64_at(image, ph + 24)?;
            let filesz = u64_at(image, ph + 32)?;
            let memsz = u64_at(image, ph + 40)?;
            let file_end = offset.checked_add(filesz).filter(|&e| e <= image.len() as u64);
            let Some(file_end) = file_end else {
                return Err(bad(format!(
                    "segment {i} data ({offset:#x}+{filesz:#x}) extends past the end of the file"
                )));
            };
            match p_type {
                PT_LOAD => {
                    if memsz < filesz {
                        return Err(bad(format!("segment {i} has p_memsz < p_filesz")));
                    }
                    if memsz > 0 {
                        segments.push(LoadSegment { paddr, memsz });
                    }
                }
                PT_NOTE => {
                    let notes = &image[offset as usize..file_end as usize];
                    if let Some(e) = find_pvh_note(notes) {
                        pvh_entry = Some(e);
                    }
                    linux_note |= has_note_owner(notes, b"Linux");
                }
                _ => {}
            }
        }
        if segments.is_empty() {
            return Err(bad("the ELF has no loadable (PT_LOAD) segments"));
        }
        Ok(Self { entry, segments, has_pvh_note: pvh_entry.is_some(), pvh_entry, linux_note })
    }

    /// Checks every segment lies in [1 MiB, ram_size).
    pub fn check_fits(&self, ram_size: u64) -> Result<(), BootError> {
        for s in &self.segments {
            if s.paddr < HIMEM_START {
                return Err(BootError::BelowHimem { addr: s.paddr });
            }
            let end = s.paddr.saturating_add(s.memsz);
            if end > ram_size {
                return Err(BootError::DoesNotFit { start: s.paddr, end, ram: ram_size >> 20 });
            }
        }
        Ok(())
    }
}

/// Whether a PT_NOTE segment holds a note whose owner name is `owner`.
fn has_note_owner(notes: &[u8], owner: &[u8]) -> bool {
    let align4 = |n: usize| (n + 3) & !3;
    let mut off = 0usize;
    while off + 12 <= notes.len() {
        let word = |o: usize| u32::from_le_bytes([notes[o], notes[o + 1], notes[o + 2], notes[o + 3]]) as usize;
        let (namesz, descsz) = (word(off), word(off + 4));
        let name_start = off + 12;
        let Some(next) = name_start.checked_add(align4(namesz)).and_then(|d| d.checked_add(align4(descsz))) else {
            return false;
        };
        if name_start + namesz > notes.len() {
            return false;
        }
        let name = &notes[name_start..name_start + namesz];
        if name.strip_suffix(b"\0").unwrap_or(name) == owner {
            return true;
        }
        off = next;
    }
    false
}

/// Scans a PT_NOTE segment for the Xen PVH entry note.
fn find_pvh_note(notes: &[u8]) -> Option<u64> {
    let mut off = 0usize;
    let align4 = |n: usize| (n + 3) & !3;
    while off + 12 <= notes.len() {
        let namesz = u32::from_le_bytes(notes[off..off + 4].try_into().ok()?) as usize;
        let descsz = u32::from_le_bytes(notes[off + 4..off + 8].try_into().ok()?) as usize;
        let ntype = u32::from_le_bytes(notes[off + 8..off + 12].try_into().ok()?);
        let name_start = off + 12;
        let desc_start = name_start.checked_add(align4(namesz))?;
        let desc_end = desc_start.checked_add(descsz)?;
        if desc_end > notes.len() {
            return None;
        }
        let name = &notes[name_start..name_start + namesz];
        if ntype == XEN_ELFNOTE_PHYS32_ENTRY && name.starts_with(b"Xen") && descsz >= 4 {
            let d = &notes[desc_start..desc_end];
            return Some(u64::from(u32::from_le_bytes([d[0], d[1], d[2], d[3]])));
        }
        off = align4(desc_end);
    }
    None
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Builds a minimal ELF64 with one PT_LOAD at `paddr` of `memsz` bytes and optionally a
    /// PVH note pointing at `paddr`.
    pub(crate) fn tiny_elf(paddr: u64, memsz: u64, pvh: bool, code: &[u8]) -> Vec<u8> {
        let phnum: u16 = if pvh { 2 } else { 1 };
        let phoff = 64usize;
        let data_off = phoff + 56 * phnum as usize;
        let note: Vec<u8> = {
            let mut n = Vec::new();
            n.extend_from_slice(&4u32.to_le_bytes());
            n.extend_from_slice(&8u32.to_le_bytes());
            n.extend_from_slice(&18u32.to_le_bytes());
            n.extend_from_slice(b"Xen\0");
            n.extend_from_slice(&paddr.to_le_bytes());
            n
        };
        let code_off = data_off + if pvh { note.len() } else { 0 };
        let mut b = vec![0u8; 64];
        b[..4].copy_from_slice(b"\x7fELF");
        b[4] = 2;
        b[5] = 1;
        b[6] = 1;
        b[16..18].copy_from_slice(&2u16.to_le_bytes());
        b[18..20].copy_from_slice(&62u16.to_le_bytes());
        b[20..24].copy_from_slice(&1u32.to_le_bytes());
        b[24..32].copy_from_slice(&paddr.to_le_bytes());
        b[32..40].copy_from_slice(&(phoff as u64).to_le_bytes());
        b[52..54].copy_from_slice(&64u16.to_le_bytes());
        b[54..56].copy_from_slice(&56u16.to_le_bytes());
        b[56..58].copy_from_slice(&phnum.to_le_bytes());
        let mut ph = |p_type: u32, flags: u32, off: usize, addr: u64, filesz: u64, memsz: u64, align: u64| {
            let mut p = vec![0u8; 56];
            p[0..4].copy_from_slice(&p_type.to_le_bytes());
            p[4..8].copy_from_slice(&flags.to_le_bytes());
            p[8..16].copy_from_slice(&(off as u64).to_le_bytes());
            p[16..24].copy_from_slice(&addr.to_le_bytes());
            p[24..32].copy_from_slice(&addr.to_le_bytes());
            p[32..40].copy_from_slice(&filesz.to_le_bytes());
            p[40..48].copy_from_slice(&memsz.to_le_bytes());
            p[48..56].copy_from_slice(&align.to_le_bytes());
            b.extend_from_slice(&p);
        };
        ph(PT_LOAD, 5, code_off, paddr, code.len() as u64, memsz.max(code.len() as u64), 0x1000);
        if pvh {
            ph(PT_NOTE, 4, data_off, 0, note.len() as u64, note.len() as u64, 4);
            b.extend_from_slice(&note);
        }
        b.extend_from_slice(code);
        b
    }

    #[test]
    fn finds_pvh_note_and_segments() {
        let e = ElfSummary::parse(&tiny_elf(0x10_0000, 0x2000, true, &[0xf4])).unwrap();
        assert_eq!(e.pvh_entry, Some(0x10_0000));
        assert_eq!(e.segments, vec![LoadSegment { paddr: 0x10_0000, memsz: 0x2000 }]);
        let e = ElfSummary::parse(&tiny_elf(0x10_0000, 0x2000, false, &[0xf4])).unwrap();
        assert!(!e.has_pvh_note);
    }

    #[test]
    fn rejects_garbage_with_reasons() {
        let msg = |b: &[u8]| ElfSummary::parse(b).unwrap_err().to_string();
        assert!(msg(b"hello world").contains("ELF magic"));
        let mut e = tiny_elf(0x10_0000, 0x2000, true, &[0xf4]);
        e[4] = 1;
        assert!(msg(&e).contains("64-bit"));
        let e = tiny_elf(0x10_0000, 0x2000, true, &[0xf4]);
        assert!(msg(&e[..100]).contains("past the end"));
    }

    #[test]
    fn checks_fit() {
        let e = ElfSummary::parse(&tiny_elf(0x10_0000, 64 << 20, true, &[0xf4])).unwrap();
        assert!(matches!(e.check_fits(32 << 20), Err(BootError::DoesNotFit { .. })));
        assert!(e.check_fits(128 << 20).is_ok());
        let e = ElfSummary::parse(&tiny_elf(0x8000, 0x10, true, &[0xf4])).unwrap();
        assert!(matches!(e.check_fits(128 << 20), Err(BootError::BelowHimem { .. })));
    }
}
