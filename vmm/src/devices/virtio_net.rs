//! virtio-net on legacy ("transitional") virtio-pci: PCI device 00:02.0, 1af4:1000, its
//! registers in an I/O-port BAR and its interrupt on INTx (8259 line [`NET_IRQ`]), the same
//! transport as virtio-blk so both engines see only port accesses.
//!
//! Two queues: 0 receives (the driver posts writable buffers), 1 transmits. Each frame is
//! preceded by the legacy 10-byte `struct virtio_net_hdr` (no offloads are offered, so the
//! header is all zeroes on receive and ignored on transmit).
//!
//! Deterministic by construction: a transmit notify only arms a deadline
//! [`TX_LATENCY_NS`] of device time later; the engine calls [`VirtioNet::transmit`] when it
//! has passed and hands the frames to the switch. A received frame enters guest memory only
//! when the engine calls [`VirtioNet::receive`], at a point of its choosing (a step
//! boundary in recordings, where it can be logged). The device never sees a clock or a
//! thread; the rings are rust-vmm's `virtio-queue`, rebuilt from the legacy registers for
//! each use, so the device stays a plain value that can be saved and compared.

pub mod link;
mod state;
pub mod switch;

use super::legacy_ring;
use super::pci::io_bar_function::{FunctionIdentity, IoBarFunction};
use std::io::{Read, Write};

use virtio_bindings::virtio_net::{virtio_net_hdr, VIRTIO_NET_F_MAC};
use virtio_queue::{Queue, QueueT};
use vm_memory::GuestMemoryMmap;

pub use self::state::{VirtioNetQueueState, VirtioNetState};

/// 8259 line of the device's INTx (QEMU's second PCI IRQ; virtio-blk has 11).
pub const NET_IRQ: u8 = 10;
/// Where BAR0 starts at reset: right after virtio-blk's.
pub const DEFAULT_BAR0: u16 = 0xc040;
/// Size of the I/O BAR: 20 bytes of legacy registers and the 6-byte MAC.
pub const BAR0_SIZE: u16 = 0x20;
/// The function's configuration-space identity: Ethernet controller (as QEMU's virtio-net), subsystem = virtio type 1 (network).
const IDENTITY: FunctionIdentity =
    FunctionIdentity { device_id: 0x1000, class: 0x02, subclass: 0x00, subsystem_id: 1, bar_size: BAR0_SIZE };
/// Entries in each queue.
pub const QUEUE_SIZE: u16 = 64;
/// Device time from a transmit notify to the frames leaving.
pub const TX_LATENCY_NS: u64 = 0;
/// PCI device number on bus 0.
pub const PCI_DEVICE: u8 = 2;
/// The receive queue.
pub const RX_QUEUE: u16 = 0;
/// The transmit queue.
pub const TX_QUEUE: u16 = 1;
/// Length of the legacy header before every frame (no mergeable buffers).
pub const NET_HDR_LEN: usize = std::mem::size_of::<virtio_net_hdr>();
/// Largest frame the device takes from the guest (an Ethernet frame without FCS; no GSO).
pub const MAX_FRAME: usize = 1514;
/// Shortest frame that has an Ethernet header.
pub const MIN_FRAME: usize = 14;

/// Legacy register offsets in BAR0.
use super::pci::virtio_legacy_regs as reg;

/// Features offered: only the MAC in configuration space.
const HOST_FEATURES: u32 = 1 << VIRTIO_NET_F_MAC;
/// Device status DRIVER_OK.
const DRIVER_OK: u8 = 4;

/// The locally administered MAC of the VM at `index` in a network (0-based): 52:54:00:74:74:NN
/// with NN = index + 1, so addresses depend only on the VM's position.
pub fn mac_for(index: u8) -> [u8; 6] {
    [0x52, 0x54, 0x00, 0x74, 0x74, index.wrapping_add(1)]
}

/// One legacy queue: where its ring is and how far the device got.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct RingPos {
    pfn: u32,
    next_avail: u16,
    next_used: u16,
}

/// What a transmit did.
#[derive(Debug, Default)]
pub struct Transmitted {
    /// The frames, without their virtio header, in ring order.
    pub frames: Vec<Vec<u8>>,
    /// Chains taken but not sent (shorter than a header plus an Ethernet header, or longer
    /// than [`MAX_FRAME`]).
    pub dropped: u32,
    /// Guest-physical ranges the device wrote (the used ring), for the dirty log.
    pub written: Vec<(u64, u64)>,
}

/// Why a frame could not be received.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RxError {
    /// The driver is not ready (no DRIVER_OK or no receive queue).
    #[error("the driver has not set up the receive queue")]
    NotReady,
    /// No buffer is posted in the receive queue.
    #[error("no receive buffer posted")]
    NoBuffer,
}

/// The virtio-net device and its PCI function.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VirtioNet {
    mac: [u8; 6],
    pci: IoBarFunction,
    driver_features: u32,
    queue_select: u16,
    queues: [RingPos; 2],
    status: u8,
    isr: u8,
    tx_due_ns: Option<u64>,
}

impl VirtioNet {
    /// A device at reset with address `mac`, its BAR at [`DEFAULT_BAR0`].
    pub fn new(mac: [u8; 6]) -> Self {
        Self {
            mac,
            pci: IoBarFunction::new(IDENTITY, DEFAULT_BAR0, NET_IRQ),
            driver_features: 0,
            queue_select: 0,
            queues: [RingPos::default(); 2],
            status: 0,
            isr: 0,
            tx_due_ns: None,
        }
    }

    /// The device's MAC address.
    pub fn mac(&self) -> [u8; 6] {
        self.mac
    }

    /// Whether `port` is one of the device's registers.
    pub fn claims(&self, port: u16) -> bool {
        self.pci.claims(port)
    }

    /// The INTx level (ISR bit set, INTx not disabled).
    pub fn irq_level(&self) -> bool {
        self.isr != 0 && self.pci.intx_enabled()
    }

    /// When notified transmissions leave, if some are pending.
    pub fn deadline(&self) -> Option<u64> {
        self.tx_due_ns
    }

    /// Whether a transmission is due at `now_ns`.
    pub fn tx_due(&self, now_ns: u64) -> bool {
        self.tx_due_ns.is_some_and(|d| now_ns >= d)
    }

    fn reset(&mut self) {
        self.driver_features = 0;
        self.queue_select = 0;
        self.queues = [RingPos::default(); 2];
        self.status = 0;
        self.isr = 0;
        self.tx_due_ns = None;
    }

    // ---- PCI configuration space ----

    /// Reads `data.len()` bytes of configuration space at `register`.
    pub fn config_read(&self, register: u8, data: &mut [u8]) {
        self.pci.config_read(register, data);
    }

    /// Writes configuration space: the command register, BAR0 and the interrupt line.
    pub fn config_write(&mut self, register: u8, data: &[u8]) {
        self.pci.config_write(register, data);
    }

    // ---- legacy virtio registers (BAR0) ----

    fn selected(&self) -> Option<&RingPos> {
        self.queues.get(usize::from(self.queue_select))
    }

    fn register_byte(&self, offset: u16) -> u8 {
        let dword = |v: u32, base: u16| v.to_le_bytes()[usize::from(offset - base)];
        let word = |v: u16, base: u16| v.to_le_bytes()[usize::from(offset - base)];
        match offset {
            reg::HOST_FEATURES..=3 => dword(HOST_FEATURES, reg::HOST_FEATURES),
            reg::GUEST_FEATURES..=7 => dword(self.driver_features, reg::GUEST_FEATURES),
            reg::QUEUE_PFN..=11 => dword(self.selected().map_or(0, |q| q.pfn), reg::QUEUE_PFN),
            reg::QUEUE_NUM..=13 => word(if self.selected().is_some() { QUEUE_SIZE } else { 0 }, reg::QUEUE_NUM),
            reg::QUEUE_SEL..=15 => word(self.queue_select, reg::QUEUE_SEL),
            reg::QUEUE_NOTIFY..=17 => 0,
            reg::STATUS => self.status,
            reg::ISR => self.isr,
            _ => self.mac.get(usize::from(offset - reg::CONFIG)).copied().unwrap_or(0),
        }
    }

    /// `in` from a BAR0 port. Reading the ISR clears it (and so lowers INTx).
    pub fn io_read(&mut self, port: u16, data: &mut [u8]) {
        let Some(base) = self.pci.io_base() else {
            data.fill(0xff);
            return;
        };
        let offset = port - base;
        for (i, b) in data.iter_mut().enumerate() {
            *b = self.register_byte(offset + i as u16);
        }
        if (offset..offset + data.len() as u16).contains(&reg::ISR) {
            self.isr = 0;
        }
    }

    /// `out` to a BAR0 port at device time `now_ns`. A receive-queue notify needs nothing:
    /// the engine offers frames whenever it has some and [`VirtioNet::rx_ready`] says yes.
    pub fn io_write(&mut self, port: u16, data: &[u8], now_ns: u64) {
        let Some(base) = self.pci.io_base() else { return };
        let offset = port - base;
        let mut v = [0u8; 4];
        let n = data.len().min(4);
        v[..n].copy_from_slice(&data[..n]);
        let value = u32::from_le_bytes(v);
        match offset {
            reg::GUEST_FEATURES => self.driver_features = value & HOST_FEATURES,
            reg::QUEUE_PFN => {
                // A PFN of 0 releases the queue (Linux's del_vq); the ring starts over.
                if let Some(q) = self.queues.get_mut(usize::from(self.queue_select)) {
                    *q = RingPos { pfn: value, next_avail: 0, next_used: 0 };
                }
            }
            reg::QUEUE_SEL => self.queue_select = value as u16,
            reg::QUEUE_NOTIFY if value as u16 == TX_QUEUE && self.tx_due_ns.is_none() => {
                self.tx_due_ns = Some(now_ns.saturating_add(TX_LATENCY_NS));
            }
            reg::STATUS => {
                if data[0] == 0 {
                    self.reset();
                } else {
                    self.status = data[0];
                }
            }
            _ => {}
        }
    }

    /// The legacy ring layout of a queue at `pfn` (`vring_init` with 4 KiB alignment).
    fn ring_addresses(pfn: u32) -> (u64, u64, u64) {
        legacy_ring::ring_addresses(pfn, QUEUE_SIZE)
    }

    /// Queue `index` as rust-vmm's `Queue`, if the driver is ready and it lies in RAM.
    fn queue(&self, index: u16, mem: &GuestMemoryMmap) -> Option<Queue> {
        let pos = self.queues[usize::from(index)];
        if pos.pfn == 0 || self.status & DRIVER_OK == 0 {
            return None;
        }
        let q = legacy_ring::queue(pos.pfn, QUEUE_SIZE, pos.next_avail, pos.next_used)?;
        q.is_valid(mem).then_some(q)
    }

    fn save_positions(&mut self, index: u16, q: &Queue) {
        let pos = &mut self.queues[usize::from(index)];
        pos.next_avail = q.next_avail();
        pos.next_used = q.next_used();
    }

    fn used_ring_range(&self, index: u16) -> (u64, u64) {
        let (_, _, used) = Self::ring_addresses(self.queues[usize::from(index)].pfn);
        (used, 6 + 8 * u64::from(QUEUE_SIZE))
    }

    /// Takes every frame in the transmit queue (the deadline has passed), returns the used
    /// buffers and sets ISR bit 0 if it took any.
    pub fn transmit(&mut self, mem: &GuestMemoryMmap) -> Transmitted {
        self.tx_due_ns = None;
        let mut out = Transmitted::default();
        let Some(mut queue) = self.queue(TX_QUEUE, mem) else { return out };
        let mut taken = 0;
        while let Some(chain) = queue.pop_descriptor_chain(mem) {
            let head = chain.head_index();
            match chain.reader(mem).map(|r| read_frame(r)) {
                Ok(Some(frame)) => out.frames.push(frame),
                _ => out.dropped += 1,
            }
            // A used ring outside RAM was refused by is_valid; nothing else can fail here.
            if queue.add_used(mem, head, 0).is_ok() {
                taken += 1;
            }
        }
        self.save_positions(TX_QUEUE, &queue);
        if taken > 0 {
            out.written.push(self.used_ring_range(TX_QUEUE));
            self.isr |= 1;
        }
        out
    }

    /// Whether a frame offered now would be received: the driver is ready and a buffer is
    /// posted. Reads the available ring, so it is a function of guest memory.
    pub fn rx_ready(&self, mem: &GuestMemoryMmap) -> bool {
        self.queue(RX_QUEUE, mem).is_some_and(|q| {
            q.avail_idx(mem, std::sync::atomic::Ordering::Acquire).is_ok_and(|idx| idx.0 != q.next_avail())
        })
    }

    /// Puts `frame` into the next receive buffer behind a zero header (cut to the buffer's
    /// size if longer), returns the buffer and sets ISR bit 0. Returns the guest-physical
    /// ranges written, for the dirty log.
    pub fn receive(&mut self, mem: &GuestMemoryMmap, frame: &[u8]) -> Result<Vec<(u64, u64)>, RxError> {
        let mut queue = self.queue(RX_QUEUE, mem).ok_or(RxError::NotReady)?;
        let chain = queue.pop_descriptor_chain(mem).ok_or(RxError::NoBuffer)?;
        let head = chain.head_index();
        let mut written: Vec<(u64, u64)> = chain.clone().writable().map(|d| (d.addr().0, u64::from(d.len()))).collect();
        let len = match chain.writer(mem) {
            Ok(mut w) => {
                let room = w.available_bytes();
                let mut packet = vec![0u8; NET_HDR_LEN];
                packet.extend_from_slice(frame);
                packet.truncate(room);
                // The writer covers exactly `room` bytes of RAM, so the write cannot fail.
                let _ = w.write_all(&packet);
                w.bytes_written() as u32
            }
            Err(_) => 0,
        };
        // A used ring outside RAM was refused by is_valid; nothing else can fail here.
        let _ = queue.add_used(mem, head, len);
        self.save_positions(RX_QUEUE, &queue);
        written.push(self.used_ring_range(RX_QUEUE));
        self.isr |= 1;
        Ok(written)
    }
}

/// The frame after the header of a transmit chain, if it is a plausible Ethernet frame.
fn read_frame(mut reader: virtio_queue::Reader<'_, ()>) -> Option<Vec<u8>> {
    let total = reader.available_bytes();
    let len = total.checked_sub(NET_HDR_LEN)?;
    if !(MIN_FRAME..=MAX_FRAME).contains(&len) {
        return None;
    }
    let mut header = [0u8; NET_HDR_LEN];
    reader.read_exact(&mut header).ok()?;
    let mut frame = vec![0u8; len];
    reader.read_exact(&mut frame).ok()?;
    Some(frame)
}

#[cfg(test)]
mod tests;
