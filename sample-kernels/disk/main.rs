//! disk: a small legacy virtio-blk driver. It scans PCI bus 0 through configuration
//! mechanism #1 for 1af4:1001, takes its I/O BAR and interrupt line from configuration
//! space, sets up queue 0 (the legacy page-aligned ring), then does the command line's
//! operations in order, one request at a time, sleeping with HLT until the device's INTx
//! interrupt says it completed. Exits 0, or panics (13) on a device or data error.
//!
//! Command line (operations in the order given; numbers decimal or 0x hex):
//!   read=S:N    reads sectors S..S+N-1 and prints `disk: read S:N sum=0xXXXXXXXX`, the
//!               wrapping 32-bit sum of all their bytes
//!   write=S:N   fills sectors S..S+N-1 so that byte i of sector s is (s*7 + i) % 251,
//!               writes them and prints `disk: wrote S:N`
#![no_std]
#![no_main]

use core::ptr::{addr_of, addr_of_mut, read_volatile, write_volatile};
use core::sync::atomic::{compiler_fence, Ordering};
use ttvm_kernel_support::cmdline::parse_u64;
use ttvm_kernel_support::pci::{self, virtio_legacy::*};
use ttvm_kernel_support::{self as k, cpu, idt, mem, panic, pic, println};

const SECTOR: usize = 512;
/// Sectors per request: the data buffer's size.
const CHUNK_SECTORS: u64 = 64;


const VIRTQ_DESC_F_NEXT: u16 = 1;
const VIRTQ_DESC_F_WRITE: u16 = 2;

/// Completions the interrupt handler has seen.
static mut INTERRUPTS: u64 = 0;
/// The device's I/O base, for the handler.
static mut IO_BASE: u16 = 0;
static mut IRQ: u8 = 0;

fn on_interrupt(_frame: &mut k::TrapFrame) {
    // Reading the ISR acknowledges the device and lowers its INTx line.
    let isr = unsafe { cpu::inb(IO_BASE + ISR) };
    if isr & 1 != 0 {
        unsafe { addr_of_mut!(INTERRUPTS).write_volatile(INTERRUPTS + 1) };
    }
    pic::eoi(unsafe { IRQ });
}

/// The split virtqueue in guest memory (identity-mapped: virtual = physical).
struct Queue {
    size: u16,
    desc: *mut u8,
    avail: *mut u8,
    used: *const u8,
    next_avail: u16,
    last_used: u16,
}

impl Queue {
    fn set_desc(&self, i: u16, addr: u64, len: u32, flags: u16, next: u16) {
        let d = unsafe { self.desc.add(16 * usize::from(i)) };
        unsafe {
            write_volatile(d as *mut u64, addr);
            write_volatile(d.add(8) as *mut u32, len);
            write_volatile(d.add(12) as *mut u16, flags);
            write_volatile(d.add(14) as *mut u16, next);
        }
    }

    fn used_idx(&self) -> u16 {
        unsafe { read_volatile(self.used.add(2) as *const u16) }
    }
}

struct Device {
    io: u16,
    queue: Queue,
    header: *mut u8,
    data: *mut u8,
    status: *mut u8,
    capacity: u64,
}

fn find_device() -> Option<u8> {
    (0..32u8).find(|&dev| pci::read32(dev, 0) == 0x1001_1af4)
}

fn alloc_zeroed(size: usize, align: usize) -> *mut u8 {
    let p = mem::alloc(size, align);
    for i in (0..size).step_by(8) {
        unsafe { write_volatile(p.add(i) as *mut u64, 0) };
    }
    p
}

fn set_up(dev: u8) -> Device {
    let bar0 = pci::read32(dev, 0x10);
    if bar0 & 1 == 0 {
        panic!("BAR0 {:#x} is not an I/O BAR", bar0);
    }
    let io = (bar0 & 0xfffc) as u16;
    let irq = (pci::read32(dev, 0x3c) & 0xff) as u8;
    // I/O space and bus mastering on.
    let cmd = pci::read32(dev, 0x04);
    pci::write32(dev, 0x04, cmd | 0x5);
    println!("disk: virtio-blk at 00:{:02x}.0, io {:#x}, irq {}", dev, io, irq);
    unsafe {
        cpu::outb(io + STATUS, 0); // reset
        cpu::outb(io + STATUS, 1); // ACKNOWLEDGE
        cpu::outb(io + STATUS, 3); // DRIVER
        let _features = cpu::inl(io + HOST_FEATURES);
        cpu::outl(io + GUEST_FEATURES, 0);
        cpu::outw(io + QUEUE_SEL, 0);
    }
    let size = unsafe { cpu::inw(io + QUEUE_NUM) };
    if size == 0 || !size.is_power_of_two() {
        panic!("queue 0 has size {}", size);
    }
    let n = usize::from(size);
    let avail_off = 16 * n;
    let used_off = (avail_off + 6 + 2 * n + 4095) & !4095;
    let ring = alloc_zeroed(used_off + ((6 + 8 * n + 4095) & !4095), 4096);
    unsafe {
        cpu::outl(io + QUEUE_PFN, (ring as u64 >> 12) as u32);
        cpu::outb(io + STATUS, 7); // DRIVER_OK
    }
    let capacity = unsafe { u64::from(cpu::inl(io + CONFIG)) | u64::from(cpu::inl(io + CONFIG + 4)) << 32 };
    println!("disk: capacity {} sectors, queue size {}", capacity, size);
    unsafe {
        IO_BASE = io;
        IRQ = irq;
    }
    idt::set_handler(pic::irq_vector(irq), on_interrupt);
    pic::unmask(irq);
    let queue = Queue {
        size,
        desc: ring,
        avail: unsafe { ring.add(avail_off) },
        used: unsafe { ring.add(used_off) },
        next_avail: 0,
        last_used: 0,
    };
    Device {
        io,
        queue,
        header: alloc_zeroed(16, 16),
        data: alloc_zeroed(CHUNK_SECTORS as usize * SECTOR, 4096),
        status: alloc_zeroed(8, 8),
        capacity,
    }
}

impl Device {
    /// One request of `sectors` sectors at `sector` through the data buffer; waits for the
    /// interrupt and checks the status.
    fn request(&mut self, write: bool, sector: u64, sectors: u64) {
        let q = &mut self.queue;
        unsafe {
            write_volatile(self.header as *mut u32, u32::from(write));
            write_volatile(self.header.add(4) as *mut u32, 0);
            write_volatile(self.header.add(8) as *mut u64, sector);
            write_volatile(self.status, 0xff);
        }
        let data_flags = if write { VIRTQ_DESC_F_NEXT } else { VIRTQ_DESC_F_NEXT | VIRTQ_DESC_F_WRITE };
        q.set_desc(0, self.header as u64, 16, VIRTQ_DESC_F_NEXT, 1);
        q.set_desc(1, self.data as u64, (sectors as usize * SECTOR) as u32, data_flags, 2);
        q.set_desc(2, self.status as u64, 1, VIRTQ_DESC_F_WRITE, 0);
        let slot = usize::from(q.next_avail % q.size);
        let seen = unsafe { addr_of!(INTERRUPTS).read_volatile() };
        unsafe { write_volatile(q.avail.add(4 + 2 * slot) as *mut u16, 0) };
        q.next_avail = q.next_avail.wrapping_add(1);
        // The ring entry must be visible before the index that publishes it.
        compiler_fence(Ordering::SeqCst);
        unsafe {
            write_volatile(q.avail.add(2) as *mut u16, q.next_avail);
            cpu::outw(self.io + QUEUE_NOTIFY, 0);
        }
        loop {
            cpu::cli();
            if unsafe { addr_of!(INTERRUPTS).read_volatile() } != seen {
                break;
            }
            cpu::sti_hlt();
        }
        cpu::sti();
        let used = q.used_idx();
        if used != q.last_used.wrapping_add(1) {
            panic!("used ring index {} after request {}", used, q.last_used);
        }
        q.last_used = used;
        let status = unsafe { read_volatile(self.status) };
        if status != 0 {
            panic!("sector {}: status {}", sector, status);
        }
    }

    fn check_range(&self, start: u64, count: u64) {
        if count == 0 || start.checked_add(count).is_none_or(|end| end > self.capacity) {
            panic!("sectors {}+{} are outside the disk ({} sectors)", start, count, self.capacity);
        }
    }

    fn read(&mut self, start: u64, count: u64) {
        self.check_range(start, count);
        let mut sum = 0u32;
        let mut s = start;
        while s < start + count {
            let n = CHUNK_SECTORS.min(start + count - s);
            self.request(false, s, n);
            for i in 0..n as usize * SECTOR {
                sum = sum.wrapping_add(u32::from(unsafe { read_volatile(self.data.add(i)) }));
            }
            s += n;
        }
        println!("disk: read {}:{} sum={:#010x}", start, count, sum);
    }

    fn write(&mut self, start: u64, count: u64) {
        self.check_range(start, count);
        let mut s = start;
        while s < start + count {
            let n = CHUNK_SECTORS.min(start + count - s);
            for j in 0..n {
                for i in 0..SECTOR as u64 {
                    let byte = ((s + j) * 7 + i) % 251;
                    unsafe { write_volatile(self.data.add((j * SECTOR as u64 + i) as usize), byte as u8) };
                }
            }
            self.request(true, s, n);
            s += n;
        }
        println!("disk: wrote {}:{}", start, count);
    }
}

/// `S:N` of an operation.
fn range(op: &str, v: &str) -> (u64, u64) {
    match v.split_once(':').and_then(|(a, b)| Some((parse_u64(a)?, parse_u64(b)?))) {
        Some(r) => r,
        None => panic!("cmdline: {}={} is not S:N", op, v),
    }
}

#[no_mangle]
extern "C" fn kmain(info: &'static k::HvmStartInfo) -> ! {
    let cmdline = k::init(info, "disk");
    let Some(dev) = find_device() else {
        println!("disk: no virtio-blk device on PCI bus 0 (run with --disk FILE)");
        k::exit(1)
    };
    let mut device = set_up(dev);
    cpu::sti();
    for token in cmdline.as_str().split_ascii_whitespace() {
        match token.split_once('=') {
            Some(("read", v)) => {
                let (s, n) = range("read", v);
                device.read(s, n);
            }
            Some(("write", v)) => {
                let (s, n) = range("write", v);
                device.write(s, n);
            }
            _ => {}
        }
    }
    println!("disk: done, {} interrupts", unsafe { addr_of!(INTERRUPTS).read_volatile() });
    k::exit(0)
}
