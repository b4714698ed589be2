//! The PCI side of a legacy virtio function: a type-0 configuration header with one I/O
//! BAR and INTx, shared by virtio-blk and virtio-net (their legacy registers live behind
//! the BAR; only the identity and the BAR's size differ).
//!
//! Linux's virtio_pci_legacy driver accepts revision 0 only, reads the BAR's size by
//! writing all ones to it, and enables I/O decoding and bus mastering through the command
//! register; nothing else of the header is writable.

/// PCI command bits these functions implement: I/O space, bus master, INTx disable.
pub const COMMAND_BITS: u16 = 0x0001 | 0x0004 | 0x0400;
/// Command register: I/O space decoding on.
const COMMAND_IO: u16 = 0x0001;
/// Command register: INTx disabled.
const COMMAND_INTX_DISABLE: u16 = 0x0400;
/// The virtio PCI vendor (also the subsystem vendor).
const VIRTIO_VENDOR: u16 = 0x1af4;

/// What a function says it is (read-only configuration space) and how big its BAR is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FunctionIdentity {
    /// Legacy (transitional) virtio device id: 0x1000 + type - 1.
    pub device_id: u16,
    /// Base class (0x01 storage, 0x02 network).
    pub class: u8,
    /// Subclass.
    pub subclass: u8,
    /// Subsystem id: the virtio device type.
    pub subsystem_id: u16,
    /// Size of the I/O BAR, a power of two.
    pub bar_size: u16,
}

/// The writable part of the header: command, BAR0 and the interrupt line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IoBarFunction {
    identity: FunctionIdentity,
    /// Command register (only [`COMMAND_BITS`]).
    pub command: u16,
    /// BAR0's base (the I/O-space bit is added on reads).
    pub bar0: u32,
    /// Interrupt line register (firmware's note of the 8259 line).
    pub interrupt_line: u8,
}

impl IoBarFunction {
    /// A function at reset: decoding off, BAR0 at `bar0`, interrupt line `line`.
    pub fn new(identity: FunctionIdentity, bar0: u16, line: u8) -> Self {
        Self { identity, command: 0, bar0: u32::from(bar0), interrupt_line: line }
    }

    /// A function with saved register values (validated by the device's state type).
    pub fn restored(identity: FunctionIdentity, command: u16, bar0: u32, interrupt_line: u8) -> Self {
        Self { identity, command, bar0, interrupt_line }
    }

    /// BAR0 bits that can be set (the base, aligned to the BAR's size).
    pub fn bar0_mask(&self) -> u32 {
        !u32::from(self.identity.bar_size - 1)
    }

    /// The I/O ports BAR0 decodes now, if I/O decoding is on and the BAR fits.
    pub fn io_base(&self) -> Option<u16> {
        let base = self.bar0 & self.bar0_mask();
        let fits = base != 0 && base + u32::from(self.identity.bar_size) <= 0x1_0000;
        (self.command & COMMAND_IO != 0 && fits).then_some(base as u16)
    }

    /// Whether `port` is one of the BAR's ports.
    pub fn claims(&self, port: u16) -> bool {
        self.io_base().is_some_and(|b| (b..b + self.identity.bar_size).contains(&port))
    }

    /// Whether the interrupt reaches the INTx pin (not disabled by the command register).
    pub fn intx_enabled(&self) -> bool {
        self.command & COMMAND_INTX_DISABLE == 0
    }

    fn config_byte(&self, register: u8) -> u8 {
        let word = |v: u16, i: u8| v.to_le_bytes()[usize::from(i & 1)];
        let dword = |v: u32, i: u8| v.to_le_bytes()[usize::from(i & 3)];
        let id = &self.identity;
        match register {
            0x00..=0x01 => word(VIRTIO_VENDOR, register),
            0x02..=0x03 => word(id.device_id, register),
            0x04..=0x05 => word(self.command, register),
            0x0a => id.subclass,
            0x0b => id.class,
            0x10..=0x13 => dword(self.bar0 | 1, register),
            0x2c..=0x2d => word(VIRTIO_VENDOR, register),
            0x2e..=0x2f => word(id.subsystem_id, register),
            0x3c => self.interrupt_line,
            0x3d => 1, // INTA#
            // Status (no capability list), revision 0 (the legacy ABI Linux requires),
            // header type 0 (single function), everything else.
            _ => 0,
        }
    }

    /// Reads `data.len()` bytes of configuration space at `register`.
    pub fn config_read(&self, register: u8, data: &mut [u8]) {
        for (i, b) in data.iter_mut().enumerate() {
            *b = self.config_byte(register.wrapping_add(i as u8));
        }
    }

    /// Writes configuration space: the command register, BAR0 (sized by writing all ones,
    /// as Linux does) and the interrupt line; everything else is read-only.
    pub fn config_write(&mut self, register: u8, data: &[u8]) {
        for (i, &b) in data.iter().enumerate() {
            let r = register.wrapping_add(i as u8);
            match r {
                0x04 => self.command = (self.command & 0xff00) | u16::from(b) & COMMAND_BITS,
                0x05 => self.command = (self.command & 0x00ff) | (u16::from(b) << 8) & COMMAND_BITS,
                0x10..=0x13 => {
                    let shift = 8 * u32::from(r - 0x10);
                    let v = (self.bar0 & !(0xff << shift)) | (u32::from(b) << shift);
                    self.bar0 = v & self.bar0_mask();
                }
                0x3c => self.interrupt_line = b,
                _ => {}
            }
        }
    }
}
