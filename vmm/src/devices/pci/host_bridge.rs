//! The host bridge at 00:00.0. Linux without ACPI or SMBIOS accepts configuration
//! mechanism #1 only if some function on bus 0 is a host bridge (class 0x0600) or VGA, or
//! is made by Intel or Compaq (`pci_sanity_check`). It is QEMU's i440FX identity (8086:1237
//! rev 2), which no Linux quirk pokes on ttvm's behalf (8086:3590 and 8086:2770 would make
//! Linux probe MMCONFIG registers). Its configuration space is read-only: it has no BARs and
//! nothing to enable.

/// Vendor (Intel).
pub const VENDOR: u16 = 0x8086;
/// Device (i440FX host bridge).
pub const DEVICE: u16 = 0x1237;

/// Reads `data.len()` bytes of its configuration space from `register`.
pub fn read(register: u8, data: &mut [u8]) {
    for (i, byte) in data.iter_mut().enumerate() {
        *byte = config_byte(register.wrapping_add(i as u8));
    }
}

fn config_byte(register: u8) -> u8 {
    let [vendor_lo, vendor_hi] = VENDOR.to_le_bytes();
    let [device_lo, device_hi] = DEVICE.to_le_bytes();
    match register {
        0x00 => vendor_lo,
        0x01 => vendor_hi,
        0x02 => device_lo,
        0x03 => device_hi,
        0x08 => 0x02, // revision
        0x0a => 0x00, // subclass: host bridge
        0x0b => 0x06, // class: bridge
        _ => 0,       // command, status, header type 0 (single function), no BARs
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifies_as_an_intel_host_bridge() {
        let mut d = [0u8; 4];
        read(0, &mut d);
        assert_eq!(u32::from_le_bytes(d), 0x1237_8086);
        let mut class = [0u8; 2];
        read(0x0a, &mut class);
        assert_eq!(u16::from_le_bytes(class), 0x0600);
    }
}
