//! The device driven the way a legacy virtio driver drives it, over real guest memory.

use super::*;
use crate::disk::DiskError;
use crate::memory::GuestRam;

/// A disk in memory: sector i is filled with byte i.
#[derive(Debug)]
struct MemDisk(Vec<u8>);

impl MemDisk {
    fn new(sectors: usize) -> Self {
        Self((0..sectors * SECTOR_SIZE).map(|i| (i / SECTOR_SIZE) as u8).collect())
    }
}

impl DiskBackend for MemDisk {
    fn read(&mut self, sector: u64, buf: &mut [u8]) -> Result<(), DiskError> {
        let at = sector as usize * SECTOR_SIZE;
        buf.copy_from_slice(&self.0[at..at + buf.len()]);
        Ok(())
    }
    fn write(&mut self, sector: u64, data: &[u8]) -> Result<(), DiskError> {
        let at = sector as usize * SECTOR_SIZE;
        self.0[at..at + data.len()].copy_from_slice(data);
        Ok(())
    }
}

const RING_PFN: u32 = 0x10; // rings at 64 KiB
const HDR: u64 = 0x20000;
const DATA: u64 = 0x21000;
const STATUS: u64 = 0x22000;
const BAR: u16 = DEFAULT_BAR0;

/// A driver's set-up: I/O decoding on, reset, ACKNOWLEDGE|DRIVER, queue 0 at RING_PFN,
/// DRIVER_OK.
fn set_up(blk: &mut VirtioBlk) {
    blk.config_write(0x04, &[0x05]);
    blk.io_write(BAR + reg::STATUS, &[0], 0);
    blk.io_write(BAR + reg::STATUS, &[3], 0);
    let mut num = [0u8; 2];
    blk.io_read(BAR + reg::QUEUE_NUM, &mut num);
    assert_eq!(u16::from_le_bytes(num), QUEUE_SIZE);
    blk.io_write(BAR + reg::QUEUE_PFN, &RING_PFN.to_le_bytes(), 0);
    blk.io_write(BAR + reg::STATUS, &[7], 0);
}

/// Puts a three-descriptor request (header, data, status) on the ring as entry `n`.
fn post(ram: &mut GuestRam, n: u16, kind: u32, sector: u64, len: u32) {
    let (desc, avail, _) = VirtioBlk::ring_addresses(RING_PFN);
    let mut hdr = [0u8; 16];
    hdr[..4].copy_from_slice(&kind.to_le_bytes());
    hdr[8..].copy_from_slice(&sector.to_le_bytes());
    ram.write(HDR, &hdr).unwrap();
    let data_flags: u16 = if kind == 0 { 1 | 2 } else { 1 }; // NEXT (| WRITE for a read)
    let descs = [(HDR, 16u32, 1u16, 1u16), (DATA, len, data_flags, 2), (STATUS, 1, 2, 0)];
    for (i, (addr, len, flags, next)) in descs.iter().enumerate() {
        let mut d = [0u8; 16];
        d[..8].copy_from_slice(&addr.to_le_bytes());
        d[8..12].copy_from_slice(&len.to_le_bytes());
        d[12..14].copy_from_slice(&flags.to_le_bytes());
        d[14..16].copy_from_slice(&next.to_le_bytes());
        ram.write(desc + 16 * i as u64, &d).unwrap();
    }
    ram.write(avail + 4 + 2 * u64::from(n % QUEUE_SIZE), &0u16.to_le_bytes()).unwrap();
    ram.write(avail + 2, &(n + 1).to_le_bytes()).unwrap();
}

fn complete(blk: &mut VirtioBlk, ram: &mut GuestRam, disk: &mut MemDisk) -> Completion {
    let view = ram.vm_memory().unwrap();
    blk.complete(&view.mem, disk)
}

#[test]
fn pci_identity_is_legacy_virtio_blk() {
    let blk = VirtioBlk::new(8);
    let mut d = [0u8; 4];
    blk.config_read(0, &mut d);
    assert_eq!(u32::from_le_bytes(d), 0x1001_1af4);
    blk.config_read(0x2c, &mut d);
    assert_eq!(u32::from_le_bytes(d), 0x0002_1af4, "subsystem id names the block type");
    blk.config_read(0x08, &mut d);
    assert_eq!(u32::from_le_bytes(d), 0x0100_0000, "revision 0, class 0x0100");
    let mut b = [0u8; 2];
    blk.config_read(0x3c, &mut b);
    assert_eq!(b, [DISK_IRQ, 1], "interrupt line and INTA#");
}

#[test]
fn bar0_sizes_like_an_io_bar_and_moves() {
    let mut blk = VirtioBlk::new(8);
    blk.config_write(0x10, &u32::MAX.to_le_bytes());
    let mut d = [0u8; 4];
    blk.config_read(0x10, &mut d);
    assert_eq!(u32::from_le_bytes(d), !u32::from(BAR0_SIZE - 1) | 1);
    blk.config_write(0x10, &0x1000u32.to_le_bytes());
    assert!(!blk.claims(0x1000), "I/O decoding is off until the command register enables it");
    blk.config_write(0x04, &[1]);
    assert!(blk.claims(0x1000) && blk.claims(0x103f) && !blk.claims(0x1040) && !blk.claims(0xc000));
}

#[test]
fn a_read_completes_at_the_deadline_with_the_disk_data_and_an_interrupt() {
    let mut ram = GuestRam::new(8 << 20).unwrap();
    let mut disk = MemDisk::new(16);
    let mut blk = VirtioBlk::new(16);
    set_up(&mut blk);
    let mut cap = [0u8; 8];
    blk.io_read(BAR + reg::CONFIG, &mut cap);
    assert_eq!(u64::from_le_bytes(cap), 16);
    post(&mut ram, 0, 0, 3, 1024);
    ram.write(STATUS, &[0xff]).unwrap();
    blk.io_write(BAR + reg::QUEUE_NOTIFY, &0u16.to_le_bytes(), 1000);
    assert_eq!(blk.deadline(), Some(1000 + COMPLETION_LATENCY_NS));
    assert!(!blk.due(1000 + COMPLETION_LATENCY_NS - 1));
    assert!(blk.due(1000 + COMPLETION_LATENCY_NS));
    assert!(!blk.irq_level());
    let done = complete(&mut blk, &mut ram, &mut disk);
    assert_eq!(done.requests, 1);
    assert_eq!(done.ops, vec![DiskOp { kind: DiskOpKind::Read, sector: 3, data: disk.0[3 * 512..5 * 512].to_vec() }]);
    let mut got = vec![0u8; 1024];
    ram.read(DATA, &mut got).unwrap();
    assert_eq!((got[0], got[1023]), (3, 4));
    let mut status = [0u8];
    ram.read(STATUS, &mut status).unwrap();
    assert_eq!(status[0], VIRTIO_BLK_S_OK_U8);
    let (_, _, used) = VirtioBlk::ring_addresses(RING_PFN);
    assert_eq!(ram.read_u64(used).unwrap() >> 16 & 0xffff, 1, "used idx");
    assert!(done.written.iter().any(|&(a, l)| a == DATA && l == 1024));
    assert!(blk.irq_level());
    let mut isr = [0u8];
    blk.io_read(BAR + reg::ISR, &mut isr);
    assert_eq!(isr[0], 1);
    assert!(!blk.irq_level(), "reading the ISR acknowledges it");
    assert_eq!(blk.deadline(), None);
}

const VIRTIO_BLK_S_OK_U8: u8 = 0;

#[test]
fn writes_reach_the_backend_and_bad_requests_fail_with_ioerr() {
    let mut ram = GuestRam::new(8 << 20).unwrap();
    let mut disk = MemDisk::new(16);
    let mut blk = VirtioBlk::new(16);
    set_up(&mut blk);
    ram.write(DATA, &[0xab; 512]).unwrap();
    post(&mut ram, 0, 1, 15, 512);
    blk.io_write(BAR + reg::QUEUE_NOTIFY, &0u16.to_le_bytes(), 0);
    let done = complete(&mut blk, &mut ram, &mut disk);
    assert_eq!(done.ops[0].kind, DiskOpKind::Write);
    assert_eq!(&disk.0[15 * 512..16 * 512], &[0xab; 512][..]);
    // Past the end of the disk.
    post(&mut ram, 1, 0, 15, 1024);
    blk.io_write(BAR + reg::QUEUE_NOTIFY, &0u16.to_le_bytes(), 0);
    let done = complete(&mut blk, &mut ram, &mut disk);
    assert!(done.ops.is_empty());
    let mut status = [0u8];
    ram.read(STATUS, &mut status).unwrap();
    assert_eq!(status[0], 1, "VIRTIO_BLK_S_IOERR");
    // Reset forgets the queue.
    blk.io_write(BAR + reg::STATUS, &[0], 0);
    assert_eq!(blk.state().queue_pfn, 0);
}
