//! PCI configuration mechanism #1 (ports 0xcf8–0xcff) plus the reset control register at
//! 0xcf9.
//!
//! CONFIG_ADDRESS (0xcf8) is a real latch: Linux detects mechanism #1 by writing
//! 0x80000000 and reading it back. This type only decodes configuration cycles
//! ([`PciConfig::data_target`]); the board answers them from the devices on bus 0 (a host
//! bridge and virtio-blk when a disk is attached, nothing otherwise). A cycle no device
//! claims reads all ones, which is what an empty slot returns.

pub mod host_bridge;
pub mod io_bar_function;
mod state;
pub mod virtio_legacy_regs;

pub use state::PciState;

/// Where a configuration data access goes: bus 0 only (ttvm has no bridges).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConfigTarget {
    /// Device number (0..=31).
    pub device: u8,
    /// Function number (0..=7).
    pub function: u8,
    /// Byte offset in the 256-byte configuration space.
    pub register: u8,
}

/// CONFIG_ADDRESS.
pub const CONFIG_ADDRESS: u16 = 0xcf8;
/// CONFIG_DATA (0xcfc–0xcff).
pub const CONFIG_DATA: u16 = 0xcfc;
/// Reset control register (byte-wide, inside the CONFIG_ADDRESS dword).
pub const RESET_CONTROL: u16 = 0xcf9;
/// CONFIG_ADDRESS bits that exist: bits 1:0 and 30:24 are reserved and read as zero.
const ADDRESS_BITS: u32 = 0x80ff_fffc;
/// Reset control bits that are stored: 1..=3 (bit 2 also asks for the reset).
const RESET_CONTROL_BITS: u8 = 0x0e;

/// The host side of configuration space.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PciConfig {
    address: u32,
    reset_control: u8,
}

impl PciConfig {
    /// Power-on state.
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether `port` belongs to this device.
    pub fn claims(port: u16) -> bool {
        (CONFIG_ADDRESS..=CONFIG_DATA + 3).contains(&port)
    }

    /// The configuration-space byte a data-port access addresses, if CONFIG_ADDRESS is
    /// enabled (bit 31) and names bus 0. Byte lanes follow the port: 0xcfe reads register
    /// offset + 2.
    pub fn data_target(&self, port: u16) -> Option<ConfigTarget> {
        if !(CONFIG_DATA..=CONFIG_DATA + 3).contains(&port) || self.address & 0x8000_0000 == 0 {
            return None;
        }
        if (self.address >> 16) & 0xff != 0 {
            return None;
        }
        Some(ConfigTarget {
            device: ((self.address >> 11) & 0x1f) as u8,
            function: ((self.address >> 8) & 0x7) as u8,
            register: (self.address & 0xfc) as u8 + (port - CONFIG_DATA) as u8,
        })
    }

    /// `in` from `port` (`data.len()` bytes).
    pub fn read(&self, port: u16, data: &mut [u8]) {
        match (port, data.len()) {
            // Only a dword access reaches the latch (as on the PIIX/Q35 host bridges).
            (CONFIG_ADDRESS, 4) => data.copy_from_slice(&self.address.to_le_bytes()),
            (RESET_CONTROL, 1) => data[0] = self.reset_control,
            // No device answers configuration cycles: the bus floats high.
            _ => data.fill(0xff),
        }
    }

    /// `out` to `port`. Returns true when the guest asks for a system reset through 0xcf9
    /// (bit 2, "reset CPU", set).
    pub fn write(&mut self, port: u16, data: &[u8]) -> bool {
        match (port, data.len()) {
            (CONFIG_ADDRESS, 4) => {
                self.address = u32::from_le_bytes([data[0], data[1], data[2], data[3]]) & ADDRESS_BITS;
                false
            }
            (RESET_CONTROL, 1) => {
                self.reset_control = data[0] & RESET_CONTROL_BITS;
                data[0] & 0x04 != 0
            }
            // Configuration writes go nowhere; byte writes to 0xcfb (mechanism #2 probing)
            // are ignored like on any mechanism-#1-only chipset.
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn address_latch_reads_back_and_data_is_all_ones() {
        let mut p = PciConfig::new();
        assert!(!p.write(CONFIG_ADDRESS, &0x8000_0000u32.to_le_bytes()));
        let mut d = [0u8; 4];
        p.read(CONFIG_ADDRESS, &mut d);
        assert_eq!(u32::from_le_bytes(d), 0x8000_0000);
        p.read(CONFIG_DATA, &mut d);
        assert_eq!(d, [0xff; 4]);
        let mut w = [0u8; 2];
        p.read(CONFIG_DATA + 2, &mut w);
        assert_eq!(w, [0xff; 2]);
        // A byte write to 0xcfb does not touch the latch.
        p.write(0xcfb, &[1]);
        p.read(CONFIG_ADDRESS, &mut d);
        assert_eq!(u32::from_le_bytes(d), 0x8000_0000);
        // Reserved bits are masked.
        p.write(CONFIG_ADDRESS, &0xffff_ffffu32.to_le_bytes());
        p.read(CONFIG_ADDRESS, &mut d);
        assert_eq!(u32::from_le_bytes(d), 0x80ff_fffc);
    }

    #[test]
    fn cf9_reset() {
        let mut p = PciConfig::new();
        assert!(!p.write(RESET_CONTROL, &[0x02]));
        assert!(p.write(RESET_CONTROL, &[0x06]));
        assert!(PciConfig::claims(0xcff) && !PciConfig::claims(0xd00) && !PciConfig::claims(0xcf7));
    }

    #[test]
    fn data_accesses_decode_device_function_and_byte_lane() {
        let mut p = PciConfig::new();
        assert_eq!(p.data_target(CONFIG_DATA), None, "disabled address");
        // Bus 0, device 1, function 0, register 0x3c.
        p.write(CONFIG_ADDRESS, &(0x8000_0000u32 | (1 << 11) | 0x3c).to_le_bytes());
        assert_eq!(p.data_target(CONFIG_DATA + 1), Some(ConfigTarget { device: 1, function: 0, register: 0x3d }));
        assert_eq!(p.data_target(CONFIG_ADDRESS), None);
        p.write(CONFIG_ADDRESS, &(0x8001_0000u32).to_le_bytes());
        assert_eq!(p.data_target(CONFIG_DATA), None, "bus 1 does not exist");
    }
}
