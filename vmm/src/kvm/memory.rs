//! Guest RAM: one anonymous host mapping, registered with KVM as slot 0 with dirty-page
//! logging, so checkpoints can ask which pages changed.

use memmap2::MmapMut;

/// Guest page size used by dirty logging and checkpoints.
pub const PAGE_SIZE: usize = 4096;
/// The smallest RAM ttvm accepts: the boot structures and a kernel at 1 MiB need room.
pub const MIN_RAM: u64 = 4 << 20;
/// The largest RAM ttvm accepts: below the 32-bit PCI hole so RAM stays one contiguous slot.
pub const MAX_RAM: u64 = 3 << 30;

/// Errors creating or accessing guest RAM.
#[allow(missing_docs)] // variant fields are named in the variant's doc and message
#[derive(Debug, thiserror::Error)]
pub enum MemoryError {
    /// The requested size is outside what ttvm supports.
    #[error("guest RAM size {size} bytes is not supported: it must be a multiple of 4 KiB between {} MiB and {} MiB", MIN_RAM >> 20, MAX_RAM >> 20)]
    BadSize { size: u64 },
    /// mmap failed.
    #[error("cannot map {size} bytes of guest RAM: {source}")]
    Map { size: u64, source: std::io::Error },
    /// A guest-physical access falls outside RAM.
    #[error("guest-physical range {addr:#x}+{len:#x} is outside RAM ({size:#x} bytes)")]
    OutOfRange { addr: u64, len: u64, size: u64 },
}

/// Guest RAM starting at guest-physical address 0.
#[derive(Debug)]
pub struct GuestRam {
    map: MmapMut,
}

impl GuestRam {
    /// Maps `size` bytes of zeroed anonymous memory.
    pub fn new(size: u64) -> Result<Self, MemoryError> {
        if !(MIN_RAM..=MAX_RAM).contains(&size) || !size.is_multiple_of(PAGE_SIZE as u64) {
            return Err(MemoryError::BadSize { size });
        }
        let map = MmapMut::map_anon(size as usize).map_err(|source| MemoryError::Map { size, source })?;
        Ok(Self { map })
    }

    /// Size in bytes.
    pub fn size(&self) -> u64 {
        self.map.len() as u64
    }

    /// Number of 4 KiB pages.
    pub fn pages(&self) -> usize {
        self.map.len() / PAGE_SIZE
    }

    /// Host address of guest-physical 0, for KVM_SET_USER_MEMORY_REGION.
    pub fn host_addr(&self) -> u64 {
        self.map.as_ptr() as u64
    }

    /// All of RAM.
    pub fn as_slice(&self) -> &[u8] {
        &self.map
    }

    /// The frames holding anything but zeroes: what a base image of this memory must store
    /// (the loaded kernel, a restored snapshot), the rest being zero.
    pub fn nonzero_pages(&self) -> Vec<u32> {
        let ram = self.as_slice();
        ram.chunks_exact(PAGE_SIZE)
            .enumerate()
            .filter(|(_, p)| p.iter().any(|&b| b != 0))
            .map(|(i, _)| i as u32)
            .collect()
    }

    /// All of RAM, mutable. Writes made here are not seen by KVM's dirty log: callers that
    /// modify RAM behind the guest's back must account for it themselves.
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        &mut self.map
    }

    fn range(&self, addr: u64, len: usize) -> Result<std::ops::Range<usize>, MemoryError> {
        let end = addr.checked_add(len as u64);
        match end {
            Some(end) if end <= self.size() => Ok(addr as usize..end as usize),
            _ => Err(MemoryError::OutOfRange { addr, len: len as u64, size: self.size() }),
        }
    }

    /// Reads guest-physical memory.
    pub fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), MemoryError> {
        let r = self.range(addr, buf.len())?;
        buf.copy_from_slice(&self.map[r]);
        Ok(())
    }

    /// Writes guest-physical memory.
    pub fn write(&mut self, addr: u64, data: &[u8]) -> Result<(), MemoryError> {
        let r = self.range(addr, data.len())?;
        self.map[r].copy_from_slice(data);
        Ok(())
    }

    /// Reads a little-endian u64 at a guest-physical address.
    pub fn read_u64(&self, addr: u64) -> Result<u64, MemoryError> {
        let mut b = [0u8; 8];
        self.read(addr, &mut b)?;
        Ok(u64::from_le_bytes(b))
    }

    /// The page with frame number `pfn`.
    pub fn page(&self, pfn: usize) -> &[u8] {
        &self.map[pfn * PAGE_SIZE..(pfn + 1) * PAGE_SIZE]
    }

    /// The page with frame number `pfn`, mutable.
    pub fn page_mut(&mut self, pfn: usize) -> &mut [u8] {
        &mut self.map[pfn * PAGE_SIZE..(pfn + 1) * PAGE_SIZE]
    }

    /// A vm-memory view of this RAM for rust-vmm crates (linux-loader).
    ///
    /// The view borrows the mapping; it must not outlive `self`, which the lifetime of the
    /// returned guard enforces.
    pub fn vm_memory(&mut self) -> Result<VmMemoryView<'_>, MemoryError> {
        use vm_memory::{GuestAddress, GuestMemoryMmap, GuestRegionMmap, MmapRegion};
        let size = self.map.len();
        let ptr = self.map.as_mut_ptr();
        // SAFETY: `ptr..ptr+size` is a live, writable mapping owned by `self.map`, which the
        // returned view mutably borrows, so it stays mapped and is not otherwise accessed
        // while the view exists. vm-memory does not unmap raw regions on drop.
        let region = unsafe {
            MmapRegion::build_raw(
                ptr,
                size,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_ANONYMOUS | libc::MAP_PRIVATE,
            )
        }
        .map_err(|e| MemoryError::Map { size: size as u64, source: std::io::Error::other(e.to_string()) })?;
        let region = GuestRegionMmap::new(region, GuestAddress(0)).ok_or_else(|| MemoryError::Map {
            size: size as u64,
            source: std::io::Error::other("vm-memory rejected the region"),
        })?;
        let mem = GuestMemoryMmap::from_regions(vec![region])
            .map_err(|e| MemoryError::Map { size: size as u64, source: std::io::Error::other(e.to_string()) })?;
        Ok(VmMemoryView { mem, _borrow: std::marker::PhantomData })
    }
}

/// A vm-memory `GuestMemoryMmap` over [`GuestRam`], borrowed for its lifetime.
#[derive(Debug)]
pub struct VmMemoryView<'a> {
    /// The vm-memory object.
    pub mem: vm_memory::GuestMemoryMmap,
    _borrow: std::marker::PhantomData<&'a mut GuestRam>,
}

impl crate::error_kind::Classify for MemoryError {
    fn kind(&self) -> crate::error_kind::ErrorKind {
        match self {
            Self::BadSize { .. } => crate::error_kind::ErrorKind::BadInput,
            Self::Map { .. } | Self::OutOfRange { .. } => crate::error_kind::ErrorKind::Host,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_bad_sizes() {
        assert!(matches!(GuestRam::new(1 << 20), Err(MemoryError::BadSize { .. })));
        assert!(matches!(GuestRam::new((8 << 20) + 1), Err(MemoryError::BadSize { .. })));
        assert!(GuestRam::new(8 << 20).is_ok());
    }

    #[test]
    fn reads_back_writes_and_checks_bounds() {
        let mut ram = GuestRam::new(8 << 20).unwrap();
        ram.write(0x1000, &[1, 2, 3]).unwrap();
        let mut b = [0u8; 3];
        ram.read(0x1000, &mut b).unwrap();
        assert_eq!(b, [1, 2, 3]);
        assert!(ram.write((8 << 20) - 1, &[0, 0]).is_err());
        assert!(ram.read(u64::MAX, &mut b).is_err());
    }
}
