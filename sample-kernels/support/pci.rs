//! PCI configuration mechanism #1 on bus 0 and the legacy virtio-pci register offsets, for
//! the sample kernels' small virtio drivers (`disk`, `net`).

use crate::cpu;

/// Legacy virtio-pci registers: offsets in the I/O BAR (`include/uapi/linux/virtio_pci.h`).
pub mod virtio_legacy {
    /// Features the device offers (32 bits).
    pub const HOST_FEATURES: u16 = 0;
    /// Features the driver accepts (32 bits).
    pub const GUEST_FEATURES: u16 = 4;
    /// The selected queue's page frame number (32 bits; 0 releases it).
    pub const QUEUE_PFN: u16 = 8;
    /// The selected queue's size (16 bits, read-only).
    pub const QUEUE_NUM: u16 = 12;
    /// Queue selector (16 bits).
    pub const QUEUE_SEL: u16 = 14;
    /// Queue notify (16 bits: the queue's index).
    pub const QUEUE_NOTIFY: u16 = 16;
    /// Device status (8 bits; 0 resets).
    pub const STATUS: u16 = 18;
    /// Interrupt status (8 bits; reading it clears it and lowers INTx).
    pub const ISR: u16 = 19;
    /// Start of the device-specific configuration.
    pub const CONFIG: u16 = 20;
}

/// CONFIG_ADDRESS for register `reg` (dword-aligned) of function 0 of `dev` on bus 0.
fn config_address(dev: u8, reg: u8) -> u32 {
    0x8000_0000u32 | (u32::from(dev) << 11) | u32::from(reg & 0xfc)
}

/// Reads a configuration dword of device `dev` on bus 0.
pub fn read32(dev: u8, reg: u8) -> u32 {
    unsafe {
        cpu::outl(0xcf8, config_address(dev, reg));
        cpu::inl(0xcfc)
    }
}

/// Writes a configuration dword of device `dev` on bus 0.
pub fn write32(dev: u8, reg: u8, v: u32) {
    unsafe {
        cpu::outl(0xcf8, config_address(dev, reg));
        cpu::outl(0xcfc, v);
    }
}
