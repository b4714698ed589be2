//! Guest-virtual to guest-physical translation by walking the guest's page tables, for the
//! step engine (fetching the instruction at RIP), gdb and the UI. Read-only: accessed and
//! dirty bits are never set, so looking at memory never changes guest state.

use kvm_bindings::kvm_sregs;

use crate::memory::GuestRam;

const CR0_PG: u64 = 1 << 31;
const CR4_PSE: u64 = 1 << 4;
const CR4_PAE: u64 = 1 << 5;
const CR4_LA57: u64 = 1 << 12;
const EFER_LMA: u64 = 1 << 10;
const CR0_WP: u64 = 1 << 16;
const CR4_SMAP: u64 = 1 << 21;
const PRESENT: u64 = 1;
const WRITABLE: u64 = 1 << 1;
const USER: u64 = 1 << 2;
const PAGE_SIZE_BIT: u64 = 1 << 7;
const ADDR_MASK: u64 = 0x000f_ffff_ffff_f000;

/// Why a translation failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TranslateError {
    /// A paging-structure entry is not present.
    #[error("address {0:#x} is not mapped")]
    NotMapped(u64),
    /// A paging structure lies outside RAM.
    #[error("page table for {0:#x} lies outside guest RAM")]
    TableOutsideRam(u64),
    /// A non-canonical address in 64-bit mode.
    #[error("address {0:#x} is not canonical")]
    NonCanonical(u64),
    /// 5-level paging is not supported.
    #[error("5-level paging is not supported")]
    FiveLevel,
}

/// The paging mode implied by control registers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PagingMode {
    /// Paging off: virtual = physical.
    None,
    /// 32-bit two-level paging.
    Bits32,
    /// PAE three-level paging.
    Pae,
    /// 4-level long-mode paging.
    Long4,
}

/// What a translation's paging-structure entries allow, every level together: a page is
/// writable or user-accessible only if each entry on the way to it says so.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PageRights {
    /// R/W set at every level.
    pub writable: bool,
    /// U/S set at every level.
    pub user: bool,
}

impl PageRights {
    /// No paging, or an entry that restricts nothing.
    pub const ALL: Self = Self { writable: true, user: true };

    fn and_entry(self, entry: u64) -> Self {
        Self { writable: self.writable && entry & WRITABLE != 0, user: self.user && entry & USER != 0 }
    }
}

/// The translation context: the registers that define the address space.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AddressSpace {
    /// CR0.
    pub cr0: u64,
    /// CR3.
    pub cr3: u64,
    /// CR4.
    pub cr4: u64,
    /// EFER.
    pub efer: u64,
}

impl AddressSpace {
    /// From the vCPU's system registers.
    pub fn from_sregs(s: &kvm_sregs) -> Self {
        Self { cr0: s.cr0, cr3: s.cr3, cr4: s.cr4, efer: s.efer }
    }

    /// Which paging mode is active.
    pub fn mode(&self) -> PagingMode {
        if self.cr0 & CR0_PG == 0 {
            PagingMode::None
        } else if self.efer & EFER_LMA != 0 {
            PagingMode::Long4
        } else if self.cr4 & CR4_PAE != 0 {
            PagingMode::Pae
        } else {
            PagingMode::Bits32
        }
    }

    /// Translates a virtual address to physical.
    pub fn translate(&self, ram: &GuestRam, vaddr: u64) -> Result<u64, TranslateError> {
        self.translate_with_rights(ram, vaddr).map(|(phys, _)| phys)
    }

    /// Whether a data access at privilege level `cpl` with RFLAGS.AC `ac` may use a page
    /// with `rights`, as the CPU's paging checks decide (SDM Vol. 3A 4.6): user mode needs
    /// a user page, and a writable one to write; supervisor mode may not touch user pages
    /// under SMAP unless AC is set, and may not write read-only pages under CR0.WP.
    /// Protection keys are not checked: ttvm's CPU model offers none, so CR4.PKE stays clear.
    pub fn allows(&self, rights: PageRights, cpl: u8, ac: bool, write: bool) -> bool {
        if self.mode() == PagingMode::None {
            return true;
        }
        if cpl == 3 {
            return rights.user && (!write || rights.writable);
        }
        let smap_refuses = rights.user && self.cr4 & CR4_SMAP != 0 && !ac;
        let wp_refuses = write && !rights.writable && self.cr0 & CR0_WP != 0;
        !smap_refuses && !wp_refuses
    }

    /// Translates a virtual address to physical, with what the translation allows.
    pub fn translate_with_rights(&self, ram: &GuestRam, vaddr: u64) -> Result<(u64, PageRights), TranslateError> {
        let read = |addr: u64| ram.read_u64(addr).map_err(|_| TranslateError::TableOutsideRam(vaddr));
        match self.mode() {
            PagingMode::None => Ok((vaddr & 0xffff_ffff, PageRights::ALL)),
            PagingMode::Long4 => {
                if self.cr4 & CR4_LA57 != 0 {
                    return Err(TranslateError::FiveLevel);
                }
                let top = vaddr >> 47;
                if top != 0 && top != 0x1ffff {
                    return Err(TranslateError::NonCanonical(vaddr));
                }
                let mut table = self.cr3 & ADDR_MASK;
                let mut rights = PageRights::ALL;
                for level in (0..4).rev() {
                    let shift = 12 + 9 * level;
                    let index = (vaddr >> shift) & 0x1ff;
                    let entry = read(table + index * 8)?;
                    if entry & PRESENT == 0 {
                        return Err(TranslateError::NotMapped(vaddr));
                    }
                    rights = rights.and_entry(entry);
                    if level > 0 && level < 3 && entry & PAGE_SIZE_BIT != 0 {
                        let page_mask = (1u64 << shift) - 1;
                        return Ok(((entry & ADDR_MASK & !page_mask) | (vaddr & page_mask), rights));
                    }
                    table = entry & ADDR_MASK;
                }
                Ok((table | (vaddr & 0xfff), rights))
            }
            PagingMode::Pae => {
                let vaddr = vaddr & 0xffff_ffff;
                let pdpte = read((self.cr3 & 0xffff_ffe0) + ((vaddr >> 30) & 3) * 8)?;
                if pdpte & PRESENT == 0 {
                    return Err(TranslateError::NotMapped(vaddr));
                }
                let pde = read((pdpte & ADDR_MASK) + ((vaddr >> 21) & 0x1ff) * 8)?;
                if pde & PRESENT == 0 {
                    return Err(TranslateError::NotMapped(vaddr));
                }
                // PAE's PDPTEs hold no R/W or U/S bits.
                let rights = PageRights::ALL.and_entry(pde);
                if pde & PAGE_SIZE_BIT != 0 {
                    return Ok(((pde & ADDR_MASK & !0x1f_ffff) | (vaddr & 0x1f_ffff), rights));
                }
                let pte = read((pde & ADDR_MASK) + ((vaddr >> 12) & 0x1ff) * 8)?;
                if pte & PRESENT == 0 {
                    return Err(TranslateError::NotMapped(vaddr));
                }
                Ok(((pte & ADDR_MASK) | (vaddr & 0xfff), rights.and_entry(pte)))
            }
            PagingMode::Bits32 => {
                let vaddr = vaddr & 0xffff_ffff;
                let read32 = |addr: u64| -> Result<u64, TranslateError> {
                    let mut b = [0u8; 4];
                    ram.read(addr, &mut b).map_err(|_| TranslateError::TableOutsideRam(vaddr))?;
                    Ok(u64::from(u32::from_le_bytes(b)))
                };
                let pde = read32((self.cr3 & 0xffff_f000) + ((vaddr >> 22) & 0x3ff) * 4)?;
                if pde & PRESENT == 0 {
                    return Err(TranslateError::NotMapped(vaddr));
                }
                let rights = PageRights::ALL.and_entry(pde);
                if pde & PAGE_SIZE_BIT != 0 && self.cr4 & CR4_PSE != 0 {
                    return Ok(((pde & 0xffc0_0000) | (vaddr & 0x3f_ffff), rights));
                }
                let pte = read32((pde & 0xffff_f000) + ((vaddr >> 12) & 0x3ff) * 4)?;
                if pte & PRESENT == 0 {
                    return Err(TranslateError::NotMapped(vaddr));
                }
                Ok(((pte & 0xffff_f000) | (vaddr & 0xfff), rights.and_entry(pte)))
            }
        }
    }

    /// Reads virtual memory into `buf`, page by page. Fails if any byte is unmapped or
    /// outside RAM.
    pub fn read_virt(&self, ram: &GuestRam, vaddr: u64, buf: &mut [u8]) -> Result<(), TranslateError> {
        let mut done = 0usize;
        while done < buf.len() {
            let va = vaddr.wrapping_add(done as u64);
            let pa = self.translate(ram, va)?;
            let in_page = (0x1000 - (va & 0xfff)) as usize;
            let n = in_page.min(buf.len() - done);
            ram.read(pa, &mut buf[done..done + n]).map_err(|_| TranslateError::NotMapped(va))?;
            done += n;
        }
        Ok(())
    }

    /// Writes virtual memory from `data`, page by page (all pages are translated first, so a
    /// failed write changes nothing).
    pub fn write_virt(&self, ram: &mut GuestRam, vaddr: u64, data: &[u8]) -> Result<(), TranslateError> {
        let mut pieces = Vec::new();
        let mut done = 0usize;
        while done < data.len() {
            let va = vaddr.wrapping_add(done as u64);
            let pa = self.translate(ram, va)?;
            let in_page = (0x1000 - (va & 0xfff)) as usize;
            let n = in_page.min(data.len() - done);
            if pa + n as u64 > ram.size() {
                return Err(TranslateError::NotMapped(va));
            }
            pieces.push((pa, done, n));
            done += n;
        }
        for (pa, off, n) in pieces {
            ram.write(pa, &data[off..off + n]).map_err(|_| TranslateError::NotMapped(pa))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn long_mode_space(ram: &mut GuestRam) -> AddressSpace {
        // PML4 at 0x1000 -> PDPT at 0x2000 -> PD at 0x3000: 2 MiB page 0 identity, and a
        // 4 KiB mapping of 0x4000_0000 -> phys 0x5000 through PT at 0x4000.
        ram.write(0x1000, &(0x2000u64 | 3).to_le_bytes()).unwrap();
        ram.write(0x2000, &(0x3000u64 | 3).to_le_bytes()).unwrap();
        ram.write(0x2008, &(0x6000u64 | 3).to_le_bytes()).unwrap(); // 1 GiB..2 GiB -> PD 0x6000
        ram.write(0x3000, &(0x83u64).to_le_bytes()).unwrap();
        ram.write(0x6000, &(0x4000u64 | 3).to_le_bytes()).unwrap();
        ram.write(0x4000, &(0x5000u64 | 3).to_le_bytes()).unwrap();
        AddressSpace { cr0: CR0_PG | 1, cr3: 0x1000, cr4: CR4_PAE, efer: EFER_LMA | (1 << 8) }
    }

    #[test]
    fn walks_four_levels_with_large_and_small_pages() {
        let mut ram = GuestRam::new(8 << 20).unwrap();
        let s = long_mode_space(&mut ram);
        assert_eq!(s.mode(), PagingMode::Long4);
        assert_eq!(s.translate(&ram, 0x1234), Ok(0x1234));
        assert_eq!(s.translate(&ram, 0x1f_ffff), Ok(0x1f_ffff));
        assert_eq!(s.translate(&ram, 0x4000_0123), Ok(0x5123));
        assert_eq!(s.translate(&ram, 0x4000_1000), Err(TranslateError::NotMapped(0x4000_1000)));
        assert_eq!(s.translate(&ram, 0x8000_0000_0000), Err(TranslateError::NonCanonical(0x8000_0000_0000)));
    }

    #[test]
    fn rights_are_those_every_level_grants() {
        let mut ram = GuestRam::new(8 << 20).unwrap();
        let s = long_mode_space(&mut ram);
        // Supervisor pages, writable at every level.
        let supervisor_rw = PageRights { writable: true, user: false };
        assert_eq!(s.translate_with_rights(&ram, 0x4000_0123), Ok((0x5123, supervisor_rw)));
        // U/S on every level but the PT entry, which is also read-only: still supervisor.
        for (at, entry) in [(0x1000u64, 0x2007u64), (0x2008, 0x6007), (0x6000, 0x4007), (0x4000, 0x5001)] {
            ram.write(at, &entry.to_le_bytes()).unwrap();
        }
        let supervisor_ro = PageRights { writable: false, user: false };
        assert_eq!(s.translate_with_rights(&ram, 0x4000_0123), Ok((0x5123, supervisor_ro)));
        ram.write(0x4000, &0x5005u64.to_le_bytes()).unwrap();
        let user_ro = PageRights { writable: false, user: true };
        assert_eq!(s.translate_with_rights(&ram, 0x4000_0123), Ok((0x5123, user_ro)));
        // The 2 MiB page's PDE has no U/S although the levels above have it now.
        assert_eq!(s.translate_with_rights(&ram, 0x1000), Ok((0x1000, supervisor_rw)));
    }

    #[test]
    fn allows_follows_the_paging_checks() {
        let mut ram = GuestRam::new(8 << 20).unwrap();
        let mut s = long_mode_space(&mut ram);
        let (ro, rw) = (PageRights { writable: false, user: false }, PageRights { writable: true, user: false });
        let (user_ro, user_rw) = (PageRights { writable: false, user: true }, PageRights::ALL);
        // User mode: user pages only, and writable ones to write.
        assert!(!s.allows(rw, 3, false, false));
        assert!(s.allows(user_ro, 3, false, false));
        assert!(!s.allows(user_ro, 3, false, true));
        assert!(s.allows(user_rw, 3, false, true));
        // Supervisor writes to read-only pages: refused under CR0.WP only.
        s.cr0 |= CR0_WP;
        assert!(!s.allows(ro, 0, false, true));
        assert!(s.allows(ro, 0, false, false));
        s.cr0 &= !CR0_WP;
        assert!(s.allows(ro, 0, false, true));
        // Supervisor access to user pages: refused under SMAP unless AC is set.
        assert!(s.allows(user_rw, 0, false, false));
        s.cr4 |= CR4_SMAP;
        assert!(!s.allows(user_rw, 0, false, false));
        assert!(s.allows(user_rw, 0, true, true));
        assert!(s.allows(rw, 0, false, true));
        // Without paging everything is allowed.
        s.cr0 &= !CR0_PG;
        assert!(s.allows(ro, 3, false, true));
    }

    #[test]
    fn virtual_reads_and_writes_cross_pages() {
        let mut ram = GuestRam::new(8 << 20).unwrap();
        let s = long_mode_space(&mut ram);
        s.write_virt(&mut ram, 0x4000_0ffe, &[1, 2]).unwrap();
        let mut b = [0u8; 2];
        s.read_virt(&ram, 0x4000_0ffe, &mut b).unwrap();
        assert_eq!(b, [1, 2]);
        assert!(s.write_virt(&mut ram, 0x4000_0fff, &[9, 9]).is_err());
        assert_eq!(ram.as_slice()[0x5fff], 2, "failed write must not change anything");
    }

    #[test]
    fn no_paging_is_identity() {
        let ram = GuestRam::new(8 << 20).unwrap();
        let s = AddressSpace { cr0: 1, cr3: 0, cr4: 0, efer: 0 };
        assert_eq!(s.translate(&ram, 0x10_0000), Ok(0x10_0000));
    }
}
