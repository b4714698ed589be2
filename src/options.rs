//! Arguments shared by the commands that build a machine.

use std::path::PathBuf;

use clap::Args;

use crate::exit_code::{Exit, BAD_INPUT};

/// How to build the machine: kernel, RAM, command line, serial.
#[derive(Debug, Args, Clone)]
pub struct MachineArgs {
    /// Kernel image (ELF with a PVH entry), or the name of a bundled sample kernel
    /// (`ttvm kernels` lists them).
    pub kernel: String,
    /// Guest RAM size, e.g. 128M, 1G (default 128M).
    #[arg(long, default_value = "128M")]
    pub mem: String,
    /// Kernel command line.
    #[arg(long)]
    pub cmdline: Option<String>,
    /// Feed the guest's serial port from this file (default: stdin when it is a terminal,
    /// a pipe or a file).
    #[arg(long, value_name = "FILE")]
    pub serial_in: Option<PathBuf>,
    /// Write the guest's serial output to this file instead of stdout.
    #[arg(long, value_name = "FILE")]
    pub serial_out: Option<PathBuf>,
    /// Initial ramdisk for a Linux kernel.
    #[arg(long, value_name = "FILE")]
    pub initrd: Option<PathBuf>,
}

impl MachineArgs {
    /// The machine configuration these arguments describe, and the kernel's display name.
    pub fn config(&self) -> Result<(ttvm_vmm::machine::MachineConfig, String), Exit> {
        let kernel = crate::kernel_arg::resolve(&self.kernel)?;
        let initrd = match &self.initrd {
            Some(p) => std::fs::read(p).map_err(|e| Exit::new(BAD_INPUT, format!("--initrd {}: {e}", p.display())))?,
            None => Vec::new(),
        };
        let config = ttvm_vmm::machine::MachineConfig {
            mem_size: parse_mem_size(&self.mem)?,
            kernel: kernel.bytes,
            cmdline: self.cmdline.clone().unwrap_or_default(),
            rtc_base_unix_secs: ttvm_vmm::clock::wall_clock_unix_secs(),
            initrd,
        };
        Ok((config, kernel.name))
    }
}

/// Parses sizes like `128M`, `1G`, `65536K` or plain bytes.
pub fn parse_mem_size(s: &str) -> Result<u64, Exit> {
    let bad = || Exit::new(BAD_INPUT, format!("--mem {s}: expected a size like 128M or 1G"));
    let t = s.trim();
    let (num, mult) = match t.chars().last() {
        Some('K' | 'k') => (&t[..t.len() - 1], 1u64 << 10),
        Some('M' | 'm') => (&t[..t.len() - 1], 1 << 20),
        Some('G' | 'g') => (&t[..t.len() - 1], 1 << 30),
        Some(_) => (t, 1),
        None => return Err(bad()),
    };
    num.parse::<u64>().ok().and_then(|n| n.checked_mul(mult)).ok_or_else(bad)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_sizes() {
        assert_eq!(parse_mem_size("128M").unwrap(), 128 << 20);
        assert_eq!(parse_mem_size("1G").unwrap(), 1 << 30);
        assert_eq!(parse_mem_size("4096").unwrap(), 4096);
        assert!(parse_mem_size("lots").is_err());
        assert!(parse_mem_size("").is_err());
        assert!(parse_mem_size("99999999999999999999G").is_err());
    }
}
