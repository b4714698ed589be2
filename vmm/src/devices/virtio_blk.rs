//! virtio-blk on legacy ("transitional") virtio-pci: PCI device 00:01.0, 1af4:1001, with
//! its registers in an I/O-port BAR (so every register access is a port access both
//! engines already log) and its interrupt on INTx, wired to 8259 line [`DISK_IRQ`].
//!
//! Deterministic completion: a queue notify does not touch the disk. It arms a deadline
//! [`COMPLETION_LATENCY_NS`] of device time later (device time is derived from icount in
//! recordings, like the PIT's); when the engine reaches it, [`VirtioBlk::complete`] takes
//! every request in the available ring at that moment, does them against a
//! [`DiskBackend`], fills the used ring and raises the interrupt. So when data lands in
//! guest RAM depends only on the guest, never on host I/O timing.
//!
//! The virtqueue itself is rust-vmm's `virtio-queue`; the device keeps only what a legacy
//! queue is made of (its page frame and ring positions) and builds the `Queue` from that
//! for each completion, so the device stays a plain value that can be saved and compared.

mod request;
mod state;

use super::legacy_ring;
use super::pci::io_bar_function::{FunctionIdentity, IoBarFunction};
use virtio_bindings::virtio_blk::{VIRTIO_BLK_F_BLK_SIZE, VIRTIO_BLK_F_SEG_MAX};
use virtio_queue::{Queue, QueueT};
use vm_memory::GuestMemoryMmap;

pub use self::request::{DiskOp, DiskOpKind};
pub use self::state::VirtioBlkState;
use crate::disk::{DiskBackend, DiskError, SECTOR_SIZE};

/// 8259 line of the device's INTx (free on ttvm's board; also QEMU's first PCI IRQ).
pub const DISK_IRQ: u8 = 11;
/// Where BAR0 starts at reset (firmware would put it there; Linux keeps assigned BARs).
pub const DEFAULT_BAR0: u16 = 0xc000;
/// Size of the I/O BAR: 20 bytes of legacy registers and the device configuration.
pub const BAR0_SIZE: u16 = 0x40;
/// The function's configuration-space identity: SCSI storage controller (as QEMU's virtio-blk), subsystem = virtio type 2 (block).
const IDENTITY: FunctionIdentity =
    FunctionIdentity { device_id: 0x1001, class: 0x01, subclass: 0x00, subsystem_id: 2, bar_size: BAR0_SIZE };
/// Entries in the one request queue.
pub const QUEUE_SIZE: u16 = 128;
/// Device time from a notify to the completion of what the queue holds then.
pub const COMPLETION_LATENCY_NS: u64 = 20_000;
/// PCI device number on bus 0.
pub const PCI_DEVICE: u8 = 1;

/// Legacy register offsets in BAR0.
use super::pci::virtio_legacy_regs as reg;

/// Features offered: one data segment per descriptor up to `seg_max`, and the block size.
const HOST_FEATURES: u32 = (1 << VIRTIO_BLK_F_SEG_MAX) | (1 << VIRTIO_BLK_F_BLK_SIZE);

/// What a completion did, for the engine to log or check.
#[derive(Debug, Default)]
pub struct Completion {
    /// Requests completed (used-ring entries written).
    pub requests: u32,
    /// The disk accesses, in the order the device did them.
    pub ops: Vec<DiskOp>,
    /// Guest-physical ranges the device wrote (data, status bytes, the used ring), so the
    /// caller can mark their pages dirty: KVM's dirty log does not see them.
    pub written: Vec<(u64, u64)>,
    /// Backend failures (each also failed its request with an I/O error status).
    pub errors: Vec<DiskError>,
}

/// The virtio-blk device and its PCI function.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VirtioBlk {
    capacity: u64,
    pci: IoBarFunction,
    driver_features: u32,
    queue_select: u16,
    queue_pfn: u32,
    next_avail: u16,
    next_used: u16,
    status: u8,
    isr: u8,
    due_ns: Option<u64>,
}

impl VirtioBlk {
    /// A device at reset over a disk of `capacity` sectors, its BAR at [`DEFAULT_BAR0`].
    pub fn new(capacity: u64) -> Self {
        Self {
            capacity,
            pci: IoBarFunction::new(IDENTITY, DEFAULT_BAR0, DISK_IRQ),
            driver_features: 0,
            queue_select: 0,
            queue_pfn: 0,
            next_avail: 0,
            next_used: 0,
            status: 0,
            isr: 0,
            due_ns: None,
        }
    }

    /// Capacity in sectors.
    pub fn capacity(&self) -> u64 {
        self.capacity
    }

    /// Whether `port` is one of the device's registers.
    pub fn claims(&self, port: u16) -> bool {
        self.pci.claims(port)
    }

    /// The INTx level (ISR bit 0 or 1 set, INTx not disabled).
    pub fn irq_level(&self) -> bool {
        self.isr != 0 && self.pci.intx_enabled()
    }

    /// When a notified queue completes, if one is pending.
    pub fn deadline(&self) -> Option<u64> {
        self.due_ns
    }

    /// Whether a completion is due at `now_ns`.
    pub fn due(&self, now_ns: u64) -> bool {
        self.due_ns.is_some_and(|d| now_ns >= d)
    }

    fn reset(&mut self) {
        self.driver_features = 0;
        self.queue_select = 0;
        self.queue_pfn = 0;
        self.next_avail = 0;
        self.next_used = 0;
        self.status = 0;
        self.isr = 0;
        self.due_ns = None;
    }

    // ---- PCI configuration space ----

    /// Reads `data.len()` bytes of configuration space at `register`.
    pub fn config_read(&self, register: u8, data: &mut [u8]) {
        self.pci.config_read(register, data);
    }

    /// Writes configuration space: the command register, BAR0 (sized by writing all ones,
    /// as Linux does) and the interrupt line; everything else is read-only.
    pub fn config_write(&mut self, register: u8, data: &[u8]) {
        self.pci.config_write(register, data);
    }

    // ---- legacy virtio registers (BAR0) ----

    fn device_config(&self) -> [u8; 24] {
        let mut c = [0u8; 24];
        c[0..8].copy_from_slice(&self.capacity.to_le_bytes());
        // size_max (8..12) not offered; seg_max: a request may use every descriptor but the
        // header and status.
        c[12..16].copy_from_slice(&u32::from(QUEUE_SIZE - 2).to_le_bytes());
        // geometry (16..20) not offered; blk_size.
        c[20..24].copy_from_slice(&(SECTOR_SIZE as u32).to_le_bytes());
        c
    }

    fn register_bytes(&self, offset: u16) -> u8 {
        let dword = |v: u32, base: u16| v.to_le_bytes()[usize::from(offset - base)];
        let word = |v: u16, base: u16| v.to_le_bytes()[usize::from(offset - base)];
        match offset {
            reg::HOST_FEATURES..=3 => dword(HOST_FEATURES, reg::HOST_FEATURES),
            reg::GUEST_FEATURES..=7 => dword(self.driver_features, reg::GUEST_FEATURES),
            reg::QUEUE_PFN..=11 => dword(if self.queue_select == 0 { self.queue_pfn } else { 0 }, reg::QUEUE_PFN),
            reg::QUEUE_NUM..=13 => word(if self.queue_select == 0 { QUEUE_SIZE } else { 0 }, reg::QUEUE_NUM),
            reg::QUEUE_SEL..=15 => word(self.queue_select, reg::QUEUE_SEL),
            reg::QUEUE_NOTIFY..=17 => 0,
            reg::STATUS => self.status,
            reg::ISR => self.isr,
            _ => self.device_config().get(usize::from(offset - reg::CONFIG)).copied().unwrap_or(0),
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
            *b = self.register_bytes(offset + i as u16);
        }
        if (offset..offset + data.len() as u16).contains(&reg::ISR) {
            self.isr = 0;
        }
    }

    /// `out` to a BAR0 port at device time `now_ns`.
    pub fn io_write(&mut self, port: u16, data: &[u8], now_ns: u64) {
        let Some(base) = self.pci.io_base() else { return };
        let offset = port - base;
        let mut v = [0u8; 4];
        let n = data.len().min(4);
        v[..n].copy_from_slice(&data[..n]);
        let value = u32::from_le_bytes(v);
        match offset {
            reg::GUEST_FEATURES => self.driver_features = value & HOST_FEATURES,
            reg::QUEUE_PFN if self.queue_select == 0 => {
                // A PFN of 0 releases the queue (Linux's del_vq); the ring starts over.
                self.queue_pfn = value;
                self.next_avail = 0;
                self.next_used = 0;
            }
            reg::QUEUE_SEL => self.queue_select = value as u16,
            reg::QUEUE_NOTIFY if value as u16 == 0 && self.queue_pfn != 0 && self.due_ns.is_none() => {
                self.due_ns = Some(now_ns.saturating_add(COMPLETION_LATENCY_NS));
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

    /// The legacy ring layout of the queue at `pfn` (`vring_init` with 4 KiB alignment).
    fn ring_addresses(pfn: u32) -> (u64, u64, u64) {
        legacy_ring::ring_addresses(pfn, QUEUE_SIZE)
    }

    fn queue(&self) -> Option<Queue> {
        legacy_ring::queue(self.queue_pfn, QUEUE_SIZE, self.next_avail, self.next_used)
    }

    /// The accesses the requests now in the available ring would make, in order, as
    /// `(kind, first sector, sectors)`, found without doing them (nothing changes): a
    /// recording checks with it that its disk can answer them before the device writes
    /// guest memory, so a failure leaves the machine as the trace has it.
    pub fn pending_ops(&self, mem: &GuestMemoryMmap) -> Vec<(DiskOpKind, u64, u64)> {
        let mut ops = Vec::new();
        if self.queue_pfn == 0 || self.status & 4 == 0 {
            return ops;
        }
        let Some(mut queue) = self.queue() else { return ops };
        if !queue.is_valid(mem) {
            return ops;
        }
        // A copy of the queue: popping moves only its own index, never the guest's rings.
        while let Some(chain) = queue.pop_descriptor_chain(mem) {
            ops.extend(request::peek(chain, mem, self.capacity));
        }
        ops
    }

    /// Completes every request in the available ring (the deadline has passed): reads and
    /// writes `backend`, fills the used ring and sets ISR bit 0. A ring the driver has not
    /// set up, or one that points outside RAM, completes nothing.
    pub fn complete(&mut self, mem: &GuestMemoryMmap, backend: &mut dyn DiskBackend) -> Completion {
        self.due_ns = None;
        let mut done = Completion::default();
        if self.queue_pfn == 0 || self.status & 4 == 0 {
            return done;
        }
        let Some(mut queue) = self.queue() else { return done };
        if !queue.is_valid(mem) {
            return done;
        }
        while let Some(chain) = queue.pop_descriptor_chain(mem) {
            let head = chain.head_index();
            let used_len = request::process(chain, mem, self.capacity, backend, &mut done);
            // A used ring outside RAM was refused by is_valid; nothing else can fail here.
            if queue.add_used(mem, head, used_len).is_ok() {
                done.requests += 1;
            }
        }
        let (_, _, used) = Self::ring_addresses(self.queue_pfn);
        done.written.push((used, 6 + 8 * u64::from(QUEUE_SIZE)));
        self.next_avail = queue.next_avail();
        self.next_used = queue.next_used();
        if done.requests > 0 {
            self.isr |= 1;
        }
        done
    }
}

#[cfg(test)]
mod tests;
