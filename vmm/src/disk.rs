//! Where a virtio-blk device's sectors live: the device model asks a [`DiskBackend`] for
//! sectors while it completes requests, and never touches a file itself.
//!
//! Three backends exist: [`FileDisk`] (`ttvm run --disk`: reads and writes go to the image,
//! as any VMM), [`CowDisk`] (`ttvm record`: reads come from the image, writes stay in memory,
//! so a recording never modifies the image it was given; the trace is the disk's history),
//! and the replay crate's trace-backed disk, which has no image at all.

use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::devices::virtio_blk::DiskOpKind;

/// Bytes per sector (virtio-blk always counts in 512-byte sectors).
pub const SECTOR_SIZE: usize = 512;
/// Bytes per disk block: the unit in which a recording stores what the guest read.
pub const BLOCK_SIZE: usize = 4096;
/// Sectors per block.
pub const SECTORS_PER_BLOCK: u64 = (BLOCK_SIZE / SECTOR_SIZE) as u64;

/// Errors of a disk backend.
#[derive(Debug, thiserror::Error)]
pub enum DiskError {
    /// The image could not be opened or sized.
    #[error("cannot open disk image {path}: {source}")]
    Open {
        /// The image.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The image is empty or not a whole number of sectors long enough to hold one.
    #[error("disk image {path} is {len} bytes: it must hold at least one 512-byte sector")]
    TooSmall {
        /// The image.
        path: PathBuf,
        /// Its length.
        len: u64,
    },
    /// Reading or writing the image failed.
    #[error("disk image I/O at sector {sector} failed: {source}")]
    Io {
        /// First sector of the access.
        sector: u64,
        /// Why.
        source: std::io::Error,
    },
    /// A replay needed a sector the recording never read (the trace holds only what the
    /// guest touched), so the replay has left the recorded history.
    #[error("sector {sector} was never read in the recording, so the trace does not hold it")]
    NotRecorded {
        /// The sector.
        sector: u64,
    },
    /// A branch's guest read a sector its parent trace never read or wrote before the
    /// branch point, and no image was given to read it from.
    #[error(
        "sector {sector} is not in the parent trace (its guest never read it or wrote it before the branch point): give the parent's disk image with --disk FILE"
    )]
    UnknownAtBranch {
        /// The sector.
        sector: u64,
    },
    /// The image given for a branch's disk is not the size of the parent's disk.
    #[error("disk image {path} holds {image} sectors, but the disk being branched has {disk}")]
    WrongSize {
        /// The image.
        path: PathBuf,
        /// Its sectors.
        image: u64,
        /// The disk's.
        disk: u64,
    },
}

/// Sector storage behind a virtio-blk device. Accesses are whole sectors; `sector` plus
/// the buffer's length is within the capacity (the device checks that first).
pub trait DiskBackend: std::fmt::Debug {
    /// Fills `buf` (a multiple of 512 bytes) from `sector` on.
    fn read(&mut self, sector: u64, buf: &mut [u8]) -> Result<(), DiskError>;
    /// Stores `data` (a multiple of 512 bytes) from `sector` on.
    fn write(&mut self, sector: u64, data: &[u8]) -> Result<(), DiskError>;
}

/// Capacity in sectors of an image file of `len` bytes (a partial last sector is not
/// visible to the guest).
pub fn capacity_of(path: &Path, len: u64) -> Result<u64, DiskError> {
    let sectors = len / SECTOR_SIZE as u64;
    if sectors == 0 {
        return Err(DiskError::TooSmall { path: path.to_path_buf(), len });
    }
    Ok(sectors)
}

/// Reads `buf` from `file` at `offset`; bytes past the end of the file read as zero.
fn read_padded(file: &File, offset: u64, buf: &mut [u8]) -> std::io::Result<()> {
    let mut done = 0;
    while done < buf.len() {
        match file.read_at(&mut buf[done..], offset + done as u64) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    buf[done..].fill(0);
    Ok(())
}

/// A raw image read and written in place (`ttvm run --disk`).
#[derive(Debug)]
pub struct FileDisk {
    file: File,
    capacity: u64,
}

impl FileDisk {
    /// Opens `path` for reading and writing.
    pub fn open(path: &Path) -> Result<Self, DiskError> {
        let open = |source| DiskError::Open { path: path.to_path_buf(), source };
        let file = std::fs::OpenOptions::new().read(true).write(true).open(path).map_err(open)?;
        let len = file.metadata().map_err(open)?.len();
        Ok(Self { file, capacity: capacity_of(path, len)? })
    }

    /// Capacity in sectors.
    pub fn capacity(&self) -> u64 {
        self.capacity
    }
}

impl DiskBackend for FileDisk {
    fn read(&mut self, sector: u64, buf: &mut [u8]) -> Result<(), DiskError> {
        read_padded(&self.file, sector * SECTOR_SIZE as u64, buf).map_err(|source| DiskError::Io { sector, source })
    }

    fn write(&mut self, sector: u64, data: &[u8]) -> Result<(), DiskError> {
        self.file.write_all_at(data, sector * SECTOR_SIZE as u64).map_err(|source| DiskError::Io { sector, source })
    }
}

/// Sectors by number, each 512 bytes: the guest's writes over a [`CowDisk`]'s base, and a
/// branch's disk as its parent trace knew it.
pub type SectorMap = HashMap<u64, Box<[u8; SECTOR_SIZE]>>;

/// Stores `data` (whole sectors; a short last one is padded with zeros) into `map` from
/// `sector` on.
pub fn store_sectors(map: &mut SectorMap, sector: u64, data: &[u8]) {
    for (i, chunk) in data.chunks(SECTOR_SIZE).enumerate() {
        let mut s = Box::new([0u8; SECTOR_SIZE]);
        s[..chunk.len()].copy_from_slice(chunk);
        map.insert(sector + i as u64, s);
    }
}

/// A disk whose base is never modified, with the guest's writes kept in memory (`ttvm
/// record`, and branches): [`CowDisk::base_block`] still returns what the base held when
/// the recording started, so a trace can log it.
///
/// The base is a raw image opened read-only, or, for a branch of a trace (`ttvm branch`),
/// the disk at the branch point as the parent trace holds it (every block it read, every
/// write before the point) over the parent's image if the user gave it. Without the image
/// a sector the parent never touched is unknown: reading it is an error, never zeros.
#[derive(Debug)]
pub struct CowDisk {
    image: Option<File>,
    capacity: u64,
    /// The base where it is known without the image (a branch's starting disk).
    known: SectorMap,
    written: SectorMap,
}

impl CowDisk {
    /// Opens `path` read-only.
    pub fn open(path: &Path) -> Result<Self, DiskError> {
        let open = |source| DiskError::Open { path: path.to_path_buf(), source };
        let file = File::open(path).map_err(open)?;
        let len = file.metadata().map_err(open)?.len();
        Ok(Self {
            image: Some(file),
            capacity: capacity_of(path, len)?,
            known: SectorMap::new(),
            written: SectorMap::new(),
        })
    }

    /// A branch's disk of `capacity` sectors: `known` (the disk at the branch point as the
    /// parent trace holds it) over `image` (the parent's image, opened with
    /// [`CowDisk::open`] from the path given), if any; its size must be the disk's.
    pub fn branched(capacity: u64, known: SectorMap, image: Option<(&Path, CowDisk)>) -> Result<Self, DiskError> {
        let mut disk = match image {
            Some((path, disk)) if disk.capacity != capacity => {
                return Err(DiskError::WrongSize { path: path.to_path_buf(), image: disk.capacity, disk: capacity })
            }
            Some((_, disk)) => disk,
            None => Self { image: None, capacity, known: SectorMap::new(), written: SectorMap::new() },
        };
        disk.known = known;
        Ok(disk)
    }

    /// Whether every sector can be read: the disk has an image under it. Only a branch's
    /// disk without one can lack sectors ([`CowDisk::first_unreadable`]).
    pub fn holds_every_sector(&self) -> bool {
        self.image.is_some()
    }

    /// Capacity in sectors.
    pub fn capacity(&self) -> u64 {
        self.capacity
    }

    /// Block `block` (8 sectors) as the base holds it, whatever the guest wrote since;
    /// past the last sector it reads as zero, and so does a sector of a branch's disk that
    /// is unknown (the guest cannot read it: [`DiskError::UnknownAtBranch`]).
    pub fn base_block(&self, block: u64) -> Result<Vec<u8>, DiskError> {
        let mut buf = vec![0u8; BLOCK_SIZE];
        let first = block * SECTORS_PER_BLOCK;
        let visible = self.capacity.saturating_sub(first).min(SECTORS_PER_BLOCK) as usize;
        for (i, out) in buf.chunks_mut(SECTOR_SIZE).take(visible).enumerate() {
            self.base_sector(first + i as u64, out, false)?;
        }
        Ok(buf)
    }

    /// The first sector that `ops` (accesses in order: kind, first sector, sectors) read
    /// and this disk cannot give: one of a branch's disk that is neither known nor in an
    /// image nor written before. The recorder asks before the device does them.
    pub fn first_unreadable(&self, ops: &[(DiskOpKind, u64, u64)]) -> Option<u64> {
        if self.holds_every_sector() {
            return None;
        }
        let mut batch = std::collections::HashSet::new();
        for &(kind, first, sectors) in ops {
            for s in first..first.saturating_add(sectors) {
                match kind {
                    DiskOpKind::Write => {
                        batch.insert(s);
                    }
                    DiskOpKind::Read => {
                        if !batch.contains(&s) && !self.written.contains_key(&s) && !self.known.contains_key(&s) {
                            return Some(s);
                        }
                    }
                }
            }
        }
        None
    }

    /// Fills `out` with `sector` of the base. An unknown sector is an error when `strict`,
    /// else left as it is.
    fn base_sector(&self, sector: u64, out: &mut [u8], strict: bool) -> Result<(), DiskError> {
        if let Some(data) = self.known.get(&sector) {
            out.copy_from_slice(&data[..]);
            return Ok(());
        }
        match &self.image {
            Some(file) => {
                read_padded(file, sector * SECTOR_SIZE as u64, out).map_err(|source| DiskError::Io { sector, source })
            }
            None if strict => Err(DiskError::UnknownAtBranch { sector }),
            None => Ok(()),
        }
    }
}

impl DiskBackend for CowDisk {
    fn read(&mut self, sector: u64, buf: &mut [u8]) -> Result<(), DiskError> {
        for (i, out) in buf.chunks_mut(SECTOR_SIZE).enumerate() {
            let s = sector + i as u64;
            match self.written.get(&s) {
                Some(data) => out.copy_from_slice(&data[..]),
                None => self.base_sector(s, out, true)?,
            }
        }
        Ok(())
    }

    fn write(&mut self, sector: u64, data: &[u8]) -> Result<(), DiskError> {
        store_sectors(&mut self.written, sector, data);
        Ok(())
    }
}

impl crate::error_kind::Classify for DiskError {
    fn kind(&self) -> crate::error_kind::ErrorKind {
        match self {
            Self::Open { .. } | Self::TooSmall { .. } | Self::WrongSize { .. } => {
                crate::error_kind::ErrorKind::BadInput
            }
            // The branch needs what the user did not give: the parent's image.
            Self::UnknownAtBranch { .. } => crate::error_kind::ErrorKind::BadInput,
            Self::Io { .. } => crate::error_kind::ErrorKind::Host,
            // The replay left the recorded history.
            Self::NotRecorded { .. } => crate::error_kind::ErrorKind::Divergence,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(sectors: usize) -> tempfile::NamedTempFile {
        let f = tempfile::NamedTempFile::new().unwrap();
        let data: Vec<u8> = (0..sectors * SECTOR_SIZE).map(|i| (i / SECTOR_SIZE) as u8).collect();
        std::fs::write(f.path(), data).unwrap();
        f
    }

    #[test]
    fn file_disk_writes_through() {
        let f = image(4);
        let mut d = FileDisk::open(f.path()).unwrap();
        assert_eq!(d.capacity(), 4);
        d.write(2, &[0xaa; SECTOR_SIZE]).unwrap();
        let bytes = std::fs::read(f.path()).unwrap();
        assert_eq!(bytes[2 * SECTOR_SIZE], 0xaa);
        let mut b = [0u8; SECTOR_SIZE];
        d.read(3, &mut b).unwrap();
        assert_eq!(b, [3; SECTOR_SIZE]);
    }

    #[test]
    fn cow_disk_never_touches_the_image_and_keeps_its_base() {
        let f = image(10);
        let before = std::fs::read(f.path()).unwrap();
        let mut d = CowDisk::open(f.path()).unwrap();
        d.write(1, &[0x55; 2 * SECTOR_SIZE]).unwrap();
        let mut b = [0u8; 3 * SECTOR_SIZE];
        d.read(0, &mut b).unwrap();
        assert_eq!(b[0], 0);
        assert_eq!(b[SECTOR_SIZE], 0x55);
        assert_eq!(b[2 * SECTOR_SIZE + 7], 0x55);
        assert_eq!(std::fs::read(f.path()).unwrap(), before);
        let base = d.base_block(0).unwrap();
        assert_eq!(base[SECTOR_SIZE], 1, "the base is the image, not the guest's writes");
        // Block 1 holds sectors 8 and 9; the rest of it is past the end and reads as zero.
        let tail = d.base_block(1).unwrap();
        assert_eq!((tail[0], tail[SECTOR_SIZE], tail[2 * SECTOR_SIZE]), (8, 9, 0));
    }

    #[test]
    fn a_branched_disk_reads_what_its_parent_knew_and_refuses_the_rest() {
        let known = || {
            let mut k = SectorMap::new();
            store_sectors(&mut k, 8, &[7u8; SECTOR_SIZE]);
            k
        };
        let mut d = CowDisk::branched(16, known(), None).unwrap();
        let mut b = [0u8; SECTOR_SIZE];
        d.read(8, &mut b).unwrap();
        assert_eq!(b, [7; SECTOR_SIZE]);
        assert!(matches!(d.read(9, &mut b), Err(DiskError::UnknownAtBranch { sector: 9 })));
        d.write(9, &[1; SECTOR_SIZE]).unwrap();
        d.read(9, &mut b).unwrap();
        assert_eq!(b, [1; SECTOR_SIZE], "the branch's own writes read back");
        let base = d.base_block(1).unwrap();
        assert_eq!((base[0], base[SECTOR_SIZE]), (7, 0), "the base is the branch point, unknown sectors zero");
        // Over the parent's image: what the parent knew wins, the rest comes from the image.
        let f = image(16);
        let mut d = CowDisk::branched(16, known(), Some((f.path(), CowDisk::open(f.path()).unwrap()))).unwrap();
        d.read(9, &mut b).unwrap();
        assert_eq!(b, [9; SECTOR_SIZE]);
        d.read(8, &mut b).unwrap();
        assert_eq!(b, [7; SECTOR_SIZE]);
        assert!(matches!(
            CowDisk::branched(10, SectorMap::new(), Some((f.path(), CowDisk::open(f.path()).unwrap()))),
            Err(DiskError::WrongSize { image: 16, disk: 10, .. })
        ));
    }

    #[test]
    fn an_empty_image_is_refused() {
        let f = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(f.path(), [0u8; 100]).unwrap();
        assert!(matches!(FileDisk::open(f.path()), Err(DiskError::TooSmall { len: 100, .. })));
        assert!(matches!(CowDisk::open(Path::new("/nonexistent/disk.img")), Err(DiskError::Open { .. })));
    }
}
