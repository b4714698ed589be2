//! A small legacy virtio-net driver shared by the `ping` and `pong` kernels (included with
//! `#[path]`). It finds 1af4:1000 on PCI bus 0 through configuration mechanism #1, sets up
//! the receive queue (0) with [`RX_BUFFERS`] posted buffers and the transmit queue (1),
//! and exchanges "numbered frames": Ethernet frames of type [`ETHERTYPE`] whose payload
//! starts with a little-endian u64. Waiting is `sti; hlt` until the device's INTx.

// Each kernel uses part of the driver.
#![allow(dead_code)]

use core::ptr::{addr_of_mut, read_volatile, write_volatile};
use core::sync::atomic::{compiler_fence, Ordering};
use ttvm_kernel_support::pci::{self, virtio_legacy::*};
use ttvm_kernel_support::{self as k, cpu, idt, mem, pic, println};


const VIRTQ_DESC_F_WRITE: u16 = 2;
const F_MAC: u32 = 1 << 5;
/// The legacy `struct virtio_net_hdr` (no mergeable buffers).
const HDR_LEN: usize = 10;
/// Room for a header and the largest Ethernet frame.
const BUF_LEN: usize = 2048;
/// Receive buffers kept posted.
const RX_BUFFERS: u16 = 16;
/// Transmit buffers used in turn.
const TX_BUFFERS: u16 = 8;
/// An EtherType for local experiments (IEEE 802 "local experimental 1").
pub const ETHERTYPE: u16 = 0x88b5;
/// The broadcast address.
pub const BROADCAST: [u8; 6] = [0xff; 6];

/// Interrupts the handler has seen (woken waiters compare it).
static mut INTERRUPTS: u64 = 0;
static mut IO_BASE: u16 = 0;
static mut IRQ: u8 = 0;

fn on_interrupt(_frame: &mut k::TrapFrame) {
    // Reading the ISR acknowledges the device and lowers its INTx line.
    let _ = unsafe { cpu::inb(IO_BASE + ISR) };
    unsafe { addr_of_mut!(INTERRUPTS).write_volatile(INTERRUPTS + 1) };
    pic::eoi(unsafe { IRQ });
}

/// One split virtqueue (identity-mapped: virtual = physical).
struct Queue {
    size: u16,
    desc: *mut u8,
    avail: *mut u8,
    used: *const u8,
    next_avail: u16,
    last_used: u16,
}

impl Queue {
    fn new(io: u16, index: u16) -> Queue {
        unsafe { cpu::outw(io + QUEUE_SEL, index) };
        let size = unsafe { cpu::inw(io + QUEUE_NUM) };
        if size == 0 || !size.is_power_of_two() {
            panic!("queue {} has size {}", index, size);
        }
        let n = usize::from(size);
        let avail_off = 16 * n;
        let used_off = (avail_off + 6 + 2 * n + 4095) & !4095;
        let ring = alloc_zeroed(used_off + ((6 + 8 * n + 4095) & !4095), 4096);
        unsafe { cpu::outl(io + QUEUE_PFN, (ring as u64 >> 12) as u32) };
        Queue {
            size,
            desc: ring,
            avail: unsafe { ring.add(avail_off) },
            used: unsafe { ring.add(used_off) },
            next_avail: 0,
            last_used: 0,
        }
    }

    fn set_desc(&self, i: u16, addr: u64, len: u32, flags: u16) {
        let d = unsafe { self.desc.add(16 * usize::from(i)) };
        unsafe {
            write_volatile(d as *mut u64, addr);
            write_volatile(d.add(8) as *mut u32, len);
            write_volatile(d.add(12) as *mut u16, flags);
            write_volatile(d.add(14) as *mut u16, 0);
        }
    }

    /// Makes descriptor `head` available (the caller notifies).
    fn publish(&mut self, head: u16) {
        let slot = usize::from(self.next_avail % self.size);
        unsafe { write_volatile(self.avail.add(4 + 2 * slot) as *mut u16, head) };
        self.next_avail = self.next_avail.wrapping_add(1);
        // The ring entry must be visible before the index that publishes it.
        compiler_fence(Ordering::SeqCst);
        unsafe { write_volatile(self.avail.add(2) as *mut u16, self.next_avail) };
    }

    fn used_idx(&self) -> u16 {
        unsafe { read_volatile(self.used.add(2) as *const u16) }
    }

    /// The next used entry (descriptor, length), if the device returned one.
    fn pop_used(&mut self) -> Option<(u16, u32)> {
        if self.used_idx() == self.last_used {
            return None;
        }
        compiler_fence(Ordering::SeqCst);
        let slot = usize::from(self.last_used % self.size);
        let e = unsafe { self.used.add(4 + 8 * slot) };
        let id = unsafe { read_volatile(e as *const u32) } as u16;
        let len = unsafe { read_volatile(e.add(4) as *const u32) };
        self.last_used = self.last_used.wrapping_add(1);
        Some((id, len))
    }
}

fn alloc_zeroed(size: usize, align: usize) -> *mut u8 {
    let p = mem::alloc(size, align);
    for i in (0..size).step_by(8) {
        unsafe { write_volatile(p.add(i) as *mut u64, 0) };
    }
    p
}

/// Sleeps until `done` holds, waking on each interrupt.
fn wait_until(mut done: impl FnMut() -> bool) {
    loop {
        cpu::cli();
        if done() {
            break;
        }
        cpu::sti_hlt();
    }
    cpu::sti();
}

/// The card.
pub struct Net {
    io: u16,
    /// Our address.
    pub mac: [u8; 6],
    rx: Queue,
    tx: Queue,
    rx_bufs: *mut u8,
    tx_bufs: *mut u8,
}

/// A numbered frame received.
pub struct Numbered {
    /// Who sent it.
    pub src: [u8; 6],
    /// Its number.
    pub number: u64,
}

impl Net {
    /// Finds and sets up the card; `None` if bus 0 has none.
    pub fn find() -> Option<Net> {
        let dev = (0..32u8).find(|&dev| pci::read32(dev, 0) == 0x1000_1af4)?;
        let bar0 = pci::read32(dev, 0x10);
        if bar0 & 1 == 0 {
            panic!("BAR0 {:#x} is not an I/O BAR", bar0);
        }
        let io = (bar0 & 0xfffc) as u16;
        let irq = (pci::read32(dev, 0x3c) & 0xff) as u8;
        pci::write32(dev, 0x04, pci::read32(dev, 0x04) | 0x5); // I/O space, bus master
        let mut mac = [0u8; 6];
        unsafe {
            cpu::outb(io + STATUS, 0); // reset
            cpu::outb(io + STATUS, 1); // ACKNOWLEDGE
            cpu::outb(io + STATUS, 3); // DRIVER
            let features = cpu::inl(io + HOST_FEATURES);
            if features & F_MAC == 0 {
                panic!("the card offers no MAC (features {:#x})", features);
            }
            cpu::outl(io + GUEST_FEATURES, F_MAC);
            for (i, b) in mac.iter_mut().enumerate() {
                *b = cpu::inb(io + CONFIG + i as u16);
            }
        }
        let mut rx = Queue::new(io, 0);
        let tx = Queue::new(io, 1);
        let rx_bufs = alloc_zeroed(usize::from(RX_BUFFERS) * BUF_LEN, 4096);
        let tx_bufs = alloc_zeroed(usize::from(TX_BUFFERS) * BUF_LEN, 4096);
        for i in 0..RX_BUFFERS {
            let buf = unsafe { rx_bufs.add(usize::from(i) * BUF_LEN) };
            rx.set_desc(i, buf as u64, BUF_LEN as u32, VIRTQ_DESC_F_WRITE);
            rx.publish(i);
        }
        unsafe {
            IO_BASE = io;
            IRQ = irq;
        }
        idt::set_handler(pic::irq_vector(irq), on_interrupt);
        pic::unmask(irq);
        unsafe {
            cpu::outb(io + STATUS, 7); // DRIVER_OK
            cpu::outw(io + QUEUE_NOTIFY, 0);
        }
        println!(
            "net: virtio-net at 00:{:02x}.0, io {:#x}, irq {}, mac {:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            dev, io, irq, mac[0], mac[1], mac[2], mac[3], mac[4], mac[5]
        );
        cpu::sti();
        Some(Net { io, mac, rx, tx, rx_bufs, tx_bufs })
    }

    /// Reclaims returned transmit buffers.
    fn reclaim_tx(&mut self) {
        while self.tx.pop_used().is_some() {}
    }

    /// Sends a numbered frame to `dst`.
    pub fn send(&mut self, dst: [u8; 6], number: u64) {
        self.reclaim_tx();
        if self.tx.next_avail.wrapping_sub(self.tx.last_used) >= TX_BUFFERS {
            wait_until(|| self.tx.used_idx() != self.tx.last_used);
            self.reclaim_tx();
        }
        let slot = self.tx.next_avail % TX_BUFFERS;
        let buf = unsafe { self.tx_bufs.add(usize::from(slot) * BUF_LEN) };
        let mut frame = [0u8; HDR_LEN + 60];
        frame[HDR_LEN..HDR_LEN + 6].copy_from_slice(&dst);
        frame[HDR_LEN + 6..HDR_LEN + 12].copy_from_slice(&self.mac);
        frame[HDR_LEN + 12..HDR_LEN + 14].copy_from_slice(&ETHERTYPE.to_be_bytes());
        frame[HDR_LEN + 14..HDR_LEN + 22].copy_from_slice(&number.to_le_bytes());
        for (i, b) in frame.iter().enumerate() {
            unsafe { write_volatile(buf.add(i), *b) };
        }
        self.tx.set_desc(slot, buf as u64, frame.len() as u32, 0);
        self.tx.publish(slot);
        unsafe { cpu::outw(self.io + QUEUE_NOTIFY, 1) };
    }

    /// Waits until the card has returned every transmit buffer: the frames have left.
    pub fn flush(&mut self) {
        let tx = &self.tx;
        wait_until(|| tx.used_idx() == tx.next_avail);
        self.reclaim_tx();
    }

    /// Waits for the next numbered frame (frames of other types are skipped).
    pub fn recv(&mut self) -> Numbered {
        loop {
            if let Some(got) = self.recv_until(|| false) {
                return got;
            }
        }
    }

    /// Waits for the next numbered frame until `expired` holds (checked whenever an
    /// interrupt wakes the CPU, e.g. a timer tick): `None` then.
    pub fn recv_until(&mut self, mut expired: impl FnMut() -> bool) -> Option<Numbered> {
        loop {
            let mut got = None;
            let mut timed_out = false;
            wait_until(|| {
                got = self.rx.pop_used();
                timed_out = got.is_none() && expired();
                got.is_some() || timed_out
            });
            if timed_out {
                return None;
            }
            let Some((id, len)) = got else { continue };
            let buf = unsafe { self.rx_bufs.add(usize::from(id % RX_BUFFERS) * BUF_LEN) };
            let mut frame = [0u8; 24];
            for (i, b) in frame.iter_mut().enumerate() {
                *b = unsafe { read_volatile(buf.add(HDR_LEN + i)) };
            }
            // The buffer goes straight back to the card.
            self.rx.publish(id);
            unsafe { cpu::outw(self.io + QUEUE_NOTIFY, 0) };
            if (len as usize) < HDR_LEN + 22 || u16::from_be_bytes([frame[12], frame[13]]) != ETHERTYPE {
                continue;
            }
            let mut src = [0u8; 6];
            src.copy_from_slice(&frame[6..12]);
            let mut n = [0u8; 8];
            n.copy_from_slice(&frame[14..22]);
            return Some(Numbered { src, number: u64::from_le_bytes(n) });
        }
    }
}

/// The MAC of the VM at `index` in a ttvm network (as the switch assigns them).
pub fn mac_of(index: u64) -> [u8; 6] {
    [0x52, 0x54, 0x00, 0x74, 0x74, (index as u8).wrapping_add(1)]
}
