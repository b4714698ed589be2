//! Legacy virtio-pci register offsets in the I/O BAR (`include/uapi/linux/virtio_pci.h`;
//! virtio-bindings has no legacy PCI header), shared by the legacy virtio devices.

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
/// Interrupt status (8 bits; reading it clears it).
pub const ISR: u16 = 19;
/// Start of the device-specific configuration.
pub const CONFIG: u16 = 20;
