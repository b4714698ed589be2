//! Userspace device models and the board that wires them to ports and IRQ lines.
//!
//! Each device is a plain state machine: no threads, no host clock. Time enters only as a
//! `now_ns` argument supplied by the engine's clock, so under the virtual clock the whole
//! board is a deterministic function of the guest's port accesses and the instruction count.

mod board_state;
pub mod i8042;
mod legacy_ring;
pub mod pci;
pub mod pic;
pub mod pit;
pub mod rtc;
pub mod serial;
pub mod virtio_blk;
pub mod virtio_net;

use std::collections::BTreeSet;

pub use self::board_state::BoardState;
use self::i8042::I8042;
use self::pci::PciConfig;
use self::pic::Pic;
use self::pit::Pit;
use self::rtc::Rtc;
use self::serial::Serial;
use self::virtio_blk::VirtioBlk;
use self::virtio_net::VirtioNet;

/// COM1 base port.
pub const COM1_BASE: u16 = 0x3f8;
/// IRQ line of COM1.
pub const COM1_IRQ: u8 = 4;
/// isa-debug-exit port (as QEMU's `-device isa-debug-exit,iobase=0xf4`).
pub const DEBUG_EXIT_PORT: u16 = 0xf4;
/// POST diagnostic port; Linux writes it as an I/O delay.
pub const POST_PORT: u16 = 0x80;

/// What a port access did beyond returning data.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IoOutcome {
    /// The port is not modelled and this is the first access to it: the caller should log
    /// it once (with the guest RIP) so the log shows what to model next.
    pub first_unmodelled: bool,
    /// The guest asked to exit with this status through the debug-exit port (or, with
    /// `reset`, asked for a reset, reported as status 0).
    pub exit_code: Option<u32>,
    /// The guest pulsed the CPU reset line (i8042 command 0xfe, or 0xcf9). ttvm has no
    /// firmware to reboot into, so a reset is the machine's clean end: `exit_code` is then
    /// `Some(0)`, which is how Linux's `reboot` ends a run.
    pub reset: bool,
}

impl IoOutcome {
    fn reset() -> Self {
        Self { first_unmodelled: false, exit_code: Some(0), reset: true }
    }
}

/// All devices of the machine. Checkpoints and snapshots save it as a [`BoardState`].
#[derive(Clone, Debug, PartialEq)]
pub struct Board {
    /// The 8259A pair.
    pub pic: Pic,
    /// The 8254 and port 0x61.
    pub pit: Pit,
    /// COM1.
    pub serial: Serial,
    /// The CMOS RTC.
    pub rtc: Rtc,
    /// PCI configuration ports (no devices) and the 0xcf9 reset register.
    pub pci: PciConfig,
    /// The keyboard controller.
    pub i8042: I8042,
    /// The virtio-blk disk (`--disk`), with the PCI host bridge that makes Linux accept the
    /// bus. Without it bus 0 is empty, as it always was. Saved apart from [`BoardState`]
    /// (frozen before disks existed): [`Board::disk_state`].
    pub virtio_blk: Option<VirtioBlk>,
    /// The virtio-net card (a VM in a network), on PCI 00:02.0 behind the same host bridge.
    /// Saved apart from [`BoardState`], like the disk.
    pub virtio_net: Option<VirtioNet>,
    unmodelled_ports: BTreeSet<u16>,
    unmodelled_mmio: BTreeSet<u64>,
}

impl Board {
    /// A board at power-on; `rtc_base_unix_secs` is the wall-clock time at boot.
    pub fn new(rtc_base_unix_secs: u64) -> Self {
        Self {
            pic: Pic::new(),
            pit: Pit::new(),
            serial: Serial::new(),
            rtc: Rtc::new(rtc_base_unix_secs),
            pci: PciConfig::new(),
            i8042: I8042::new(),
            virtio_blk: None,
            virtio_net: None,
            unmodelled_ports: BTreeSet::new(),
            unmodelled_mmio: BTreeSet::new(),
        }
    }

    /// Handles `in` of `data.len()` bytes from `port`.
    pub fn pio_read(&mut self, port: u16, data: &mut [u8], now_ns: u64) -> IoOutcome {
        let mut outcome = IoOutcome::default();
        if port == DEBUG_EXIT_PORT {
            data.fill(0);
            return outcome;
        }
        if PciConfig::claims(port) {
            match self.pci.data_target(port) {
                Some(t) => self.pci_config_read(t, data),
                None => self.pci.read(port, data),
            }
            return outcome;
        }
        if let Some(blk) = self.virtio_blk.as_mut().filter(|b| b.claims(port)) {
            blk.io_read(port, data);
            self.update_disk_irq();
            return outcome;
        }
        if let Some(net) = self.virtio_net.as_mut().filter(|n| n.claims(port)) {
            net.io_read(port, data);
            self.update_net_irq();
            return outcome;
        }
        // Wider accesses to byte-wide devices touch consecutive ports, as on the ISA bus.
        for (i, byte) in data.iter_mut().enumerate() {
            let p = port.wrapping_add(i as u16);
            *byte = match p {
                0x20 | 0x21 | 0xa0 | 0xa1 | 0x4d0 | 0x4d1 => self.pic.read(p),
                0x40..=0x43 => self.pit.read(p, now_ns),
                0x61 => self.pit.read_port61(now_ns),
                0x70 | 0x71 => self.rtc.read(p, now_ns),
                COM1_BASE..=0x3ff => {
                    let v = self.serial.read((p - COM1_BASE) as u8);
                    self.update_serial_irq();
                    v
                }
                i8042::DATA_PORT | i8042::COMMAND_PORT => {
                    let v = self.i8042.read(p);
                    self.update_i8042_irqs();
                    v
                }
                POST_PORT => 0xff,
                _ => {
                    outcome.first_unmodelled |= self.unmodelled_ports.insert(p);
                    0xff
                }
            };
        }
        outcome
    }

    /// Handles `out` of `data` to `port`.
    pub fn pio_write(&mut self, port: u16, data: &[u8], now_ns: u64) -> IoOutcome {
        let mut outcome = IoOutcome::default();
        if port == DEBUG_EXIT_PORT {
            let mut v = [0u8; 4];
            v[..data.len().min(4)].copy_from_slice(&data[..data.len().min(4)]);
            outcome.exit_code = Some(u32::from_le_bytes(v));
            return outcome;
        }
        if PciConfig::claims(port) {
            if let Some(t) = self.pci.data_target(port) {
                self.pci_config_write(t, data);
                return outcome;
            }
            return if self.pci.write(port, data) { IoOutcome::reset() } else { outcome };
        }
        if let Some(blk) = self.virtio_blk.as_mut().filter(|b| b.claims(port)) {
            blk.io_write(port, data, now_ns);
            self.update_disk_irq();
            return outcome;
        }
        if let Some(net) = self.virtio_net.as_mut().filter(|n| n.claims(port)) {
            net.io_write(port, data, now_ns);
            self.update_net_irq();
            return outcome;
        }
        for (i, &byte) in data.iter().enumerate() {
            let p = port.wrapping_add(i as u16);
            match p {
                0x20 | 0x21 | 0xa0 | 0xa1 | 0x4d0 | 0x4d1 => self.pic.write(p, byte),
                0x40..=0x43 => {
                    // Edges the old programming produced up to now are owed to the PIC;
                    // latch them before the counter changes.
                    self.advance(now_ns);
                    self.pit.write(p, byte, now_ns);
                }
                0x61 => self.pit.write_port61(byte, now_ns),
                0x70 | 0x71 => self.rtc.write(p, byte, now_ns),
                COM1_BASE..=0x3ff => {
                    self.serial.write((p - COM1_BASE) as u8, byte);
                    self.update_serial_irq();
                }
                i8042::DATA_PORT | i8042::COMMAND_PORT => {
                    let reset = self.i8042.write(p, byte);
                    self.update_i8042_irqs();
                    if reset {
                        return IoOutcome::reset();
                    }
                }
                POST_PORT => {}
                _ => outcome.first_unmodelled |= self.unmodelled_ports.insert(p),
            }
        }
        outcome
    }

    /// Handles an MMIO read: nothing is memory-mapped yet, so all ones, logged once.
    pub fn mmio_read(&mut self, addr: u64, data: &mut [u8]) -> IoOutcome {
        data.fill(0xff);
        IoOutcome { first_unmodelled: self.unmodelled_mmio.insert(addr & !0xfff), ..IoOutcome::default() }
    }

    /// Handles an MMIO write: ignored, logged once per page.
    pub fn mmio_write(&mut self, addr: u64, _data: &[u8]) -> IoOutcome {
        IoOutcome { first_unmodelled: self.unmodelled_mmio.insert(addr & !0xfff), ..IoOutcome::default() }
    }

    /// A configuration read: the host bridge (00:00.0) exists only with a virtio device
    /// attached, virtio-blk at 00:01.0 and virtio-net at 00:02.0; every other slot floats high.
    fn pci_config_read(&self, t: pci::ConfigTarget, data: &mut [u8]) {
        let any = self.virtio_blk.is_some() || self.virtio_net.is_some();
        match (t.device, t.function) {
            (0, 0) if any => pci::host_bridge::read(t.register, data),
            (virtio_blk::PCI_DEVICE, 0) if self.virtio_blk.is_some() => {
                self.virtio_blk.as_ref().map_or((), |b| b.config_read(t.register, data))
            }
            (virtio_net::PCI_DEVICE, 0) if self.virtio_net.is_some() => {
                self.virtio_net.as_ref().map_or((), |n| n.config_read(t.register, data))
            }
            _ => data.fill(0xff),
        }
    }

    fn pci_config_write(&mut self, t: pci::ConfigTarget, data: &[u8]) {
        match (t.device, t.function) {
            (virtio_blk::PCI_DEVICE, 0) => {
                if let Some(blk) = self.virtio_blk.as_mut() {
                    blk.config_write(t.register, data);
                    self.update_disk_irq();
                }
            }
            (virtio_net::PCI_DEVICE, 0) => {
                if let Some(net) = self.virtio_net.as_mut() {
                    net.config_write(t.register, data);
                    self.update_net_irq();
                }
            }
            _ => {}
        }
    }

    fn update_net_irq(&mut self) {
        if let Some(level) = self.virtio_net.as_ref().map(VirtioNet::irq_level) {
            self.pic.set_irq_level(virtio_net::NET_IRQ, level);
        }
    }

    /// Attaches a virtio-net card with address `mac` (at reset).
    pub fn attach_net(&mut self, mac: [u8; 6]) {
        self.virtio_net = Some(VirtioNet::new(mac));
    }

    /// Whether the card has notified transmissions due at `now_ns`.
    pub fn net_tx_due(&self, now_ns: u64) -> bool {
        self.virtio_net.as_ref().is_some_and(|n| n.tx_due(now_ns))
    }

    /// Takes the card's notified frames (see [`VirtioNet::transmit`]) and raises its interrupt.
    pub fn transmit_net(&mut self, mem: &vm_memory::GuestMemoryMmap) -> virtio_net::Transmitted {
        let out = match self.virtio_net.as_mut() {
            Some(net) => net.transmit(mem),
            None => virtio_net::Transmitted::default(),
        };
        self.update_net_irq();
        out
    }

    /// Puts a received frame into the card's next buffer (see [`VirtioNet::receive`]).
    pub fn receive_net(
        &mut self,
        mem: &vm_memory::GuestMemoryMmap,
        frame: &[u8],
    ) -> Result<Vec<(u64, u64)>, virtio_net::RxError> {
        let written = match self.virtio_net.as_mut() {
            Some(net) => net.receive(mem, frame),
            None => Err(virtio_net::RxError::NotReady),
        };
        self.update_net_irq();
        written
    }

    /// The card's saved state, if the machine has one.
    pub fn net_state(&self) -> Option<virtio_net::VirtioNetState> {
        self.virtio_net.as_ref().map(VirtioNet::state)
    }

    /// Puts the card back as `state` left it (`None`: no card).
    pub fn restore_net(
        &mut self,
        state: Option<&virtio_net::VirtioNetState>,
    ) -> Result<(), crate::persist::StateError> {
        self.virtio_net = state.map(VirtioNet::from_state).transpose()?;
        Ok(())
    }

    fn update_disk_irq(&mut self) {
        if let Some(level) = self.virtio_blk.as_ref().map(VirtioBlk::irq_level) {
            self.pic.set_irq_level(virtio_blk::DISK_IRQ, level);
        }
    }

    /// Attaches a virtio-blk disk of `capacity` sectors (at reset).
    pub fn attach_disk(&mut self, capacity: u64) {
        self.virtio_blk = Some(VirtioBlk::new(capacity));
    }

    /// Whether the disk has notified requests due at `now_ns`.
    pub fn disk_due(&self, now_ns: u64) -> bool {
        self.virtio_blk.as_ref().is_some_and(|b| b.due(now_ns))
    }

    /// Completes the disk's notified requests (see [`VirtioBlk::complete`]) and raises its
    /// interrupt.
    pub fn complete_disk(
        &mut self,
        mem: &vm_memory::GuestMemoryMmap,
        backend: &mut dyn crate::disk::DiskBackend,
    ) -> virtio_blk::Completion {
        let done = match self.virtio_blk.as_mut() {
            Some(blk) => blk.complete(mem, backend),
            None => virtio_blk::Completion::default(),
        };
        self.update_disk_irq();
        done
    }

    /// The disk's saved state, if a disk is attached.
    pub fn disk_state(&self) -> Option<virtio_blk::VirtioBlkState> {
        self.virtio_blk.as_ref().map(VirtioBlk::state)
    }

    /// Puts the disk back as `state` left it (`None`: no disk).
    pub fn restore_disk(
        &mut self,
        state: Option<&virtio_blk::VirtioBlkState>,
    ) -> Result<(), crate::persist::StateError> {
        self.virtio_blk = state.map(VirtioBlk::from_state).transpose()?;
        Ok(())
    }

    fn update_i8042_irqs(&mut self) {
        let (kbd, aux) = (self.i8042.kbd_irq(), self.i8042.aux_irq());
        self.pic.set_irq_level(i8042::KBD_IRQ, kbd);
        self.pic.set_irq_level(i8042::AUX_IRQ, aux);
    }

    fn update_serial_irq(&mut self) {
        let level = self.serial.irq_level();
        self.pic.set_irq_level(COM1_IRQ, level);
    }

    /// Brings timer outputs up to `now_ns`, raising IRQ0 edges that happened since the last
    /// call. Several missed edges coalesce into one, as the PIC would latch them.
    pub fn advance(&mut self, now_ns: u64) {
        if self.pit.poll_irq0(now_ns) > 0 {
            self.pic.set_irq_level(0, false);
            self.pic.set_irq_level(0, true);
            self.pic.set_irq_level(0, false);
        }
    }

    /// The next virtual time at which a device will raise an interrupt on its own.
    pub fn next_deadline(&self) -> Option<u64> {
        let disk = self.virtio_blk.as_ref().and_then(VirtioBlk::deadline);
        let net = self.virtio_net.as_ref().and_then(VirtioNet::deadline);
        [self.pit.next_irq0_deadline(), disk, net].into_iter().flatten().min()
    }

    /// Whether the PIC asserts INTR.
    pub fn interrupt_pending(&self) -> bool {
        self.pic.has_interrupt()
    }

    /// The CPU's interrupt acknowledge: returns the vector to deliver.
    pub fn acknowledge_interrupt(&mut self) -> u8 {
        self.pic.acknowledge()
    }

    /// Offers serial input; returns how many bytes the UART accepted.
    pub fn serial_input(&mut self, bytes: &[u8]) -> usize {
        let n = self.serial.enqueue_input(bytes);
        self.update_serial_irq();
        n
    }

    /// Room in the UART's receive FIFO.
    pub fn serial_input_space(&self) -> usize {
        self.serial.input_space()
    }

    /// Appends bytes the guest transmitted to `out`.
    pub fn drain_serial_output(&mut self, out: &mut Vec<u8>) {
        self.serial.drain_output(out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn init_pic(b: &mut Board) {
        for (p, v) in
            [(0x20, 0x11), (0x21, 0x20), (0x21, 4), (0x21, 1), (0xa0, 0x11), (0xa1, 0x28), (0xa1, 2), (0xa1, 1)]
        {
            b.pio_write(p, &[v], 0);
        }
    }

    #[test]
    fn debug_exit_reports_the_code() {
        let mut b = Board::new(0);
        assert_eq!(b.pio_write(DEBUG_EXIT_PORT, &7u32.to_le_bytes(), 0).exit_code, Some(7));
        assert_eq!(b.pio_write(DEBUG_EXIT_PORT, &[3], 0).exit_code, Some(3));
    }

    #[test]
    fn unmodelled_ports_read_all_ones_and_are_reported_once() {
        let mut b = Board::new(0);
        let mut d = [0u8; 2];
        assert!(b.pio_read(0x2f8, &mut d, 0).first_unmodelled);
        assert_eq!(d, [0xff, 0xff]);
        assert!(!b.pio_read(0x2f8, &mut d, 0).first_unmodelled);
        assert!(b.pio_write(0x500, &[1], 0).first_unmodelled);
        let mut m = [0u8; 4];
        assert!(b.mmio_read(0xfee0_0020, &mut m).first_unmodelled);
        assert_eq!(m, [0xff; 4]);
        assert!(!b.mmio_write(0xfee0_00b0, &m).first_unmodelled);
    }

    #[test]
    fn pit_tick_reaches_the_cpu_through_the_pic() {
        let mut b = Board::new(0);
        init_pic(&mut b);
        b.pio_write(0x21, &[0xfe], 0); // unmask IRQ0 only
        b.pio_write(0x43, &[0x34], 0); // ch0, lo/hi, mode 2
        b.pio_write(0x40, &[0xa9], 0); // 1193 = 0x04a9 -> 1 kHz
        b.pio_write(0x40, &[0x04], 0);
        let deadline = b.next_deadline().expect("timer armed");
        b.advance(deadline - 1);
        assert!(!b.interrupt_pending());
        b.advance(deadline);
        assert!(b.interrupt_pending());
        assert_eq!(b.acknowledge_interrupt(), 0x20);
        assert!(!b.interrupt_pending());
        b.pio_write(0x20, &[0x20], deadline); // EOI
        assert!(b.next_deadline().unwrap() > deadline);
    }

    #[test]
    fn serial_receive_raises_irq4() {
        let mut b = Board::new(0);
        init_pic(&mut b);
        b.pio_write(0x21, &[!(1 << COM1_IRQ)], 0);
        b.pio_write(COM1_BASE + 1, &[0x01], 0); // IER: receive data available
        b.pio_write(COM1_BASE + 4, &[0x08], 0); // MCR: OUT2 gates the IRQ
        assert!(!b.interrupt_pending());
        assert_eq!(b.serial_input(b"hi"), 2);
        assert!(b.interrupt_pending());
        assert_eq!(b.acknowledge_interrupt(), 0x20 + COM1_IRQ);
        let mut d = [0u8];
        b.pio_read(COM1_BASE, &mut d, 0);
        assert_eq!(d[0], b'h');
    }

    #[test]
    fn i8042_reset_and_cf9_reset_end_the_machine_with_status_0() {
        let mut b = Board::new(0);
        let mut d = [0u8];
        b.pio_read(0x64, &mut d, 0);
        assert_eq!(d[0] & 0x02, 0, "input buffer empty: kb_wait() does not spin");
        let o = b.pio_write(0x64, &[0xfe], 0);
        assert!(o.reset);
        assert_eq!(o.exit_code, Some(0));
        let o = b.pio_write(0xcf9, &[0x06], 0);
        assert!(o.reset && o.exit_code == Some(0));
        assert!(!b.pio_write(0x64, &[0xaa], 0).reset);
    }

    #[test]
    fn pci_bus_is_empty_and_keyboard_interrupt_reaches_the_pic() {
        let mut b = Board::new(0);
        init_pic(&mut b);
        b.pio_write(0xcf8, &0x8000_0000u32.to_le_bytes(), 0);
        let mut d = [0u8; 4];
        b.pio_read(0xcf8, &mut d, 0);
        assert_eq!(u32::from_le_bytes(d), 0x8000_0000);
        let o = b.pio_read(0xcfc, &mut d, 0);
        assert_eq!(d, [0xff; 4]);
        assert!(!o.first_unmodelled);
        b.pio_write(0x21, &[!(1 << 1)], 0);
        b.pio_write(0x60, &[0xf2], 0); // identify keyboard
        assert!(b.interrupt_pending());
        assert_eq!(b.acknowledge_interrupt(), 0x21);
    }

    #[test]
    fn a_network_card_sits_at_00_02_0_behind_the_host_bridge_and_interrupts_on_irq_10() {
        let mut b = Board::new(0);
        init_pic(&mut b);
        let config_read = |b: &mut Board, dev: u32, reg: u32| {
            b.pio_write(0xcf8, &(0x8000_0000u32 | dev << 11 | reg).to_le_bytes(), 0);
            let mut d = [0u8; 4];
            b.pio_read(0xcfc, &mut d, 0);
            u32::from_le_bytes(d)
        };
        assert_eq!(config_read(&mut b, 2, 0), u32::MAX, "no card: the slot floats high");
        assert_eq!(config_read(&mut b, 0, 0), u32::MAX, "no virtio device: no host bridge either");
        b.attach_net(virtio_net::mac_for(0));
        assert_eq!(config_read(&mut b, 2, 0), 0x1000_1af4);
        assert_ne!(config_read(&mut b, 0, 0), u32::MAX, "the host bridge appears with the card");
        assert_eq!(config_read(&mut b, 1, 0), u32::MAX, "no disk");
        // I/O decoding on through the command register, then a transmit notify: due at once.
        b.pio_write(0xcf8, &(0x8000_0000u32 | 2 << 11 | 4).to_le_bytes(), 0);
        b.pio_write(0xcfc, &5u32.to_le_bytes(), 0);
        b.pio_write(virtio_net::DEFAULT_BAR0 + 16, &1u16.to_le_bytes(), 500);
        assert!(b.net_tx_due(500));
        assert_eq!(b.next_deadline(), Some(500 + virtio_net::TX_LATENCY_NS));
        // A transmit with no rings set up takes nothing and raises nothing.
        let mut ram = crate::memory::GuestRam::new(8 << 20).unwrap();
        {
            let view = ram.vm_memory().unwrap();
            assert!(b.transmit_net(&view.mem).frames.is_empty());
            assert!(!b.interrupt_pending());
            assert_eq!(b.receive_net(&view.mem, &[0; 60]), Err(virtio_net::RxError::NotReady));
        }
        // Receive queue at page 0x10 with one 2 KiB buffer posted, DRIVER_OK, IRQ 10 unmasked.
        let bar = virtio_net::DEFAULT_BAR0;
        b.pio_write(bar + 14, &0u16.to_le_bytes(), 0);
        b.pio_write(bar + 8, &0x10u32.to_le_bytes(), 0);
        b.pio_write(bar + 18, &[7], 0);
        let mut desc = [0u8; 16];
        desc[..8].copy_from_slice(&0x40000u64.to_le_bytes());
        desc[8..12].copy_from_slice(&2048u32.to_le_bytes());
        desc[12..14].copy_from_slice(&2u16.to_le_bytes());
        ram.write(0x10000, &desc).unwrap();
        let avail = 0x10000 + 16 * u64::from(virtio_net::QUEUE_SIZE);
        ram.write(avail + 2, &1u16.to_le_bytes()).unwrap();
        b.pio_write(0xa1, &[!(1u8 << 2)], 0);
        b.pio_write(0x21, &[!(1u8 << 2)], 0);
        let view = ram.vm_memory().unwrap();
        assert!(b.receive_net(&view.mem, &[0; 60]).is_ok());
        assert!(b.interrupt_pending());
        assert_eq!(b.acknowledge_interrupt(), 0x28 + 2, "IRQ 10 on the slave PIC");
        let mut isr = [0u8];
        b.pio_read(bar + 19, &mut isr, 0);
        assert_eq!(isr[0], 1);
    }

    #[test]
    fn board_state_round_trips_through_clone() {
        let mut b = Board::new(1_700_000_000);
        init_pic(&mut b);
        b.pio_write(COM1_BASE, b"x", 0);
        let copy = b.clone();
        assert_eq!(copy, b);
    }
}
