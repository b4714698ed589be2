//! Arguments shared by the commands that build a machine.

use std::path::PathBuf;

use clap::Args;

use ttvm_vmm::console::{ConsoleInput, ConsoleOutput};

use crate::exit_code::{Exit, BAD_INPUT, HOST_ERROR};

/// How to build the machine: kernel, RAM, command line, serial.
#[derive(Debug, Args, Clone)]
pub struct MachineArgs {
    /// Kernel image (ELF with a PVH entry), or the name of a bundled sample kernel
    /// (`ttvm kernels` lists them). `ttvm record --from SNAPSHOT` takes none.
    pub kernel: Option<String>,
    /// Guest RAM size, e.g. 128M, 1G (default 128M).
    #[arg(long, default_value = DEFAULT_MEM_ARG)]
    pub mem: String,
    /// Kernel command line (default for a Linux kernel: `ttvm_vmm::boot::linux::DEFAULT_CMDLINE`,
    /// see docs/LINUX.md; empty for other kernels).
    #[arg(long)]
    pub cmdline: Option<String>,
    /// Where the guest's serial port reads and writes.
    #[command(flatten)]
    pub serial: SerialArgs,
    /// Initial ramdisk for a Linux kernel.
    #[arg(long, value_name = "FILE")]
    pub initrd: Option<PathBuf>,
    /// A raw disk image the guest sees as a virtio-blk disk (legacy virtio-pci, PCI 00:01.0,
    /// IRQ 11). `run` writes the guest's writes to it; `record` and `debug` never modify it:
    /// the trace holds every block the guest read and every write.
    #[arg(long, value_name = "FILE")]
    pub disk: Option<PathBuf>,
}

impl MachineArgs {
    /// The KERNEL argument, which every command but `record --from` needs.
    pub fn kernel_name(&self) -> Result<&str, Exit> {
        self.kernel.as_deref().ok_or_else(|| {
            Exit::new(BAD_INPUT, "a KERNEL is needed (a file or a sample's name; `ttvm kernels` lists them)")
        })
    }

    /// Whether any argument describes a new machine (what `record --from` must not get:
    /// the snapshot's machine is already built).
    pub fn describes_a_machine(&self) -> bool {
        self.kernel.is_some() || self.cmdline.is_some() || self.initrd.is_some() || self.mem != DEFAULT_MEM_ARG
    }

    /// The machine configuration these arguments describe, and the kernel's display name.
    pub fn config(&self) -> Result<(ttvm_vmm::machine::MachineConfig, String), Exit> {
        let kernel = crate::kernel_arg::resolve(self.kernel_name()?)?;
        let initrd = match &self.initrd {
            Some(p) => std::fs::read(p).map_err(|e| Exit::new(BAD_INPUT, format!("--initrd {}: {e}", p.display())))?,
            None => Vec::new(),
        };
        let cmdline = self.cmdline.clone().unwrap_or_else(|| default_cmdline(&kernel.bytes).to_string());
        let config = ttvm_vmm::machine::MachineConfig {
            mem_size: parse_mem_size(&self.mem)?,
            kernel: kernel.bytes,
            cmdline,
            rtc_base_unix_secs: ttvm_vmm::clock::wall_clock_unix_secs(),
            initrd,
        };
        Ok((config, kernel.name))
    }
}

/// `--mem` when not given.
const DEFAULT_MEM_ARG: &str = "128M";

/// Where the guest's serial port reads from and writes to.
#[derive(Debug, Args, Clone, Default)]
pub struct SerialArgs {
    /// Feed the guest's serial port from this file (default: stdin when it is a terminal,
    /// a pipe or a file).
    #[arg(long, value_name = "FILE")]
    pub serial_in: Option<PathBuf>,
    /// Write the guest's serial output to this file instead of stdout.
    #[arg(long, value_name = "FILE")]
    pub serial_out: Option<PathBuf>,
}

impl SerialArgs {
    /// The serial input: the `--serial-in` file when given, otherwise stdin.
    pub fn input(&self) -> Result<ConsoleInput, Exit> {
        match &self.serial_in {
            Some(p) => ConsoleInput::from_file(p)
                .map_err(|e| Exit::new(BAD_INPUT, format!("--serial-in {}: {e}", p.display()))),
            None => Ok(ConsoleInput::stdin()),
        }
    }

    /// The serial output: the `--serial-out` file when given, otherwise `default`.
    pub fn output(&self, default: ConsoleOutput) -> Result<ConsoleOutput, Exit> {
        match &self.serial_out {
            Some(p) => ConsoleOutput::file(p).map_err(|e| Exit::new(HOST_ERROR, format!("{}: {e}", p.display()))),
            None => Ok(default),
        }
    }
}

/// `--symbols PATH`: a System.map or an ELF with a symbol table, for showing function names.
/// Commands that show guest addresses flatten this into their arguments and call [`load`].
///
/// [`load`]: SymbolArgs::load
#[derive(Debug, Args, Clone, Default)]
pub struct SymbolArgs {
    /// Kernel symbols for function names: a System.map (Debian: the linux-image-*-dbg
    /// package's /usr/lib/debug/boot/System.map-*) or an ELF with a symbol table.
    #[arg(long, value_name = "PATH")]
    pub symbols: Option<PathBuf>,
}

impl SymbolArgs {
    /// Loads the table if `--symbols` was given and checks it against `kernel`, the image
    /// that runs, when known; a bad file or one of another kernel is bad input (status 2).
    pub fn load(&self, kernel: Option<&[u8]>) -> Result<Option<ttvm_vmm::symbols::SymbolTable>, Exit> {
        let Some(path) = &self.symbols else { return Ok(None) };
        let bad = |e| Exit::new(BAD_INPUT, format!("--symbols {}: {e}", path.display()));
        let table = ttvm_vmm::symbols::SymbolTable::load(path).map_err(bad)?;
        if let Some(image) = kernel {
            table.check_kernel(image).map_err(bad)?;
        }
        Ok(Some(table))
    }

    /// [`load`](SymbolArgs::load), checked against the kernel recorded in `trace` (which is
    /// only opened when `--symbols` was given).
    pub fn load_for_trace(&self, trace: &std::path::Path) -> Result<Option<ttvm_vmm::symbols::SymbolTable>, Exit> {
        if self.symbols.is_none() {
            return Ok(None);
        }
        let rec = crate::commands::replay::open_recording(trace)?;
        self.load(Some(&rec.header().machine.kernel))
    }
}

/// The command line used when `--cmdline` is not given: Linux gets a serial console and the
/// switches docs/LINUX.md explains; other kernels get none.
pub fn default_cmdline(kernel: &[u8]) -> &'static str {
    if ttvm_vmm::boot::looks_like_linux(kernel) {
        ttvm_vmm::boot::linux::DEFAULT_CMDLINE
    } else {
        ""
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

/// Parses durations like `200ms`, `5s`, `1.5s` or `2m` (clap value parser): positive,
/// at least a millisecond.
pub fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    let t = s.trim();
    let (num, unit_secs) = if let Some(n) = t.strip_suffix("ms") {
        (n, 1e-3)
    } else if let Some(n) = t.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = t.strip_suffix('m') {
        (n, 60.0)
    } else {
        return Err(format!("{s}: expected a duration like 200ms, 5s or 2m"));
    };
    match num.trim().parse::<f64>() {
        Ok(v) if v.is_finite() && v * unit_secs >= 1e-3 && v * unit_secs <= 86_400.0 => {
            Ok(std::time::Duration::from_secs_f64(v * unit_secs))
        }
        _ => Err(format!("{s}: expected a duration from 1ms to 24h, like 200ms, 5s or 2m")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_durations() {
        use std::time::Duration;
        assert_eq!(parse_duration("200ms").unwrap(), Duration::from_millis(200));
        assert_eq!(parse_duration("5s").unwrap(), Duration::from_secs(5));
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        for bad in ["", "5", "0s", "-1s", "0.1ms", "fast", "nans", "1e9s"] {
            assert!(parse_duration(bad).is_err(), "{bad} accepted");
        }
    }

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
