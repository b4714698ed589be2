//! The network command line: global options, then one group per `--vm`.

use std::ffi::OsString;

use clap::Parser;

use crate::exit_code::{Exit, BAD_INPUT};
use crate::options::MachineArgs;

/// Most VMs on one switch (the last byte of the MAC numbers them).
pub const MAX_VMS: usize = 254;

/// Options of the whole network (before the first `--vm`).
#[derive(Debug, Parser)]
#[command(name = "ttvm run", no_binary_name = true, about = "Run several VMs on one virtual switch")]
pub struct NetworkArgs {
    /// Stop every VM still running after this many seconds of host time (its outcome is
    /// then "timeout", status 73).
    #[arg(long, value_name = "SECONDS")]
    pub timeout: Option<f64>,
    /// `record`: the directory for the traces (one per VM) and the manifest.
    #[arg(short = 'o', long = "output", value_name = "DIR")]
    pub output: Option<std::path::PathBuf>,
    /// `record`: record the network again and again until a VM fails (non-zero status,
    /// triple fault, halt), keeping only the failing recording in DIR. The VMs' threads
    /// are scheduled differently each time, so frames arrive at other points.
    #[arg(long)]
    pub until_failure: bool,
    /// With --until-failure: give up after this many runs.
    #[arg(long, value_name = "N", default_value_t = 20, requires = "until_failure")]
    pub runs: u32,
    /// `run`: take a consistent snapshot of the whole network every DURATION of host time
    /// (`50ms`, `5s`, `2m`) into --snapshots DIR, pausing every VM briefly at once;
    /// `ttvm resume DIR` continues the newest complete one.
    #[arg(long, value_name = "DURATION", value_parser = crate::options::parse_duration, requires = "snapshots")]
    pub snapshot_every: Option<std::time::Duration>,
    /// `run`: the directory the live snapshots go to, one numbered directory each (created
    /// if missing; must be empty).
    #[arg(long, value_name = "DIR", requires = "snapshot_every")]
    pub snapshots: Option<std::path::PathBuf>,
    /// Keep the newest N live snapshots [default: 3].
    #[arg(long, value_name = "N", requires = "snapshots", value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub keep: Option<u32>,
}

/// One VM's group: `--vm KERNEL` and the options up to the next `--vm`.
#[derive(Debug, Parser)]
#[command(name = "ttvm run … --vm", no_binary_name = true)]
pub struct VmArgs {
    /// Kernel, RAM, command line (its serial output is shown line by line with the VM's
    /// position and name in front).
    #[command(flatten)]
    pub machine: MachineArgs,
}

/// A parsed network command line.
#[derive(Debug)]
pub struct Network {
    /// The network's options.
    pub options: NetworkArgs,
    /// The VMs, in position order (position = switch port = MAC).
    pub vms: Vec<VmArgs>,
}

fn clap_error(e: clap::Error) -> Exit {
    let code = if e.use_stderr() { BAD_INPUT } else { 0 };
    Exit::new(code, e.render().to_string().trim_end().to_string())
}

/// `args` without the `-o DIR` (or `--output DIR`, `--output=DIR`) that follows a `--vm`,
/// and that DIR.
fn take_output(args: &[OsString]) -> Result<(Vec<OsString>, Option<std::path::PathBuf>), Exit> {
    let first_vm = args.iter().position(|a| a == "--vm").unwrap_or(args.len());
    let mut rest: Vec<OsString> = args[..first_vm].to_vec();
    let mut output = None;
    let mut words = args[first_vm..].iter();
    while let Some(w) = words.next() {
        let value = if w == "-o" || w == "--output" {
            Some(words.next().cloned().ok_or_else(|| Exit::new(BAD_INPUT, "-o needs a DIR"))?)
        } else {
            w.to_str().and_then(|s| s.strip_prefix("--output=")).map(OsString::from)
        };
        match value {
            Some(v) if output.is_some() => {
                return Err(Exit::new(BAD_INPUT, format!("-o given twice ({})", v.to_string_lossy())))
            }
            Some(v) => output = Some(v.into()),
            None => rest.push(w.clone()),
        }
    }
    Ok((rest, output))
}

/// Splits `args` (after `run`) at each `--vm` and parses the parts.
pub fn parse(args: &[OsString]) -> Result<Network, Exit> {
    // `-o DIR` names the whole network's output wherever it stands (no VM option is
    // called -o), so `record --vm a --vm b -o DIR` reads naturally.
    let (args, output) = take_output(args)?;
    let mut groups = args.split(|a| a == "--vm");
    let global = groups.next().unwrap_or_default();
    let mut options = NetworkArgs::try_parse_from(global).map_err(clap_error)?;
    if output.is_some() {
        if options.output.is_some() {
            return Err(Exit::new(BAD_INPUT, "-o given twice"));
        }
        options.output = output;
    }
    let mut vms = Vec::new();
    for (i, group) in groups.enumerate() {
        if group.first().is_none_or(|w| w.to_string_lossy().starts_with('-')) {
            return Err(Exit::new(BAD_INPUT, format!("--vm number {}: give the KERNEL right after --vm", i + 1)));
        }
        let vm = VmArgs::try_parse_from(group).map_err(clap_error)?;
        if vm.machine.disk.is_some() {
            return Err(Exit::new(BAD_INPUT, format!("--vm {}: --disk is not supported in a network yet", i + 1)));
        }
        vms.push(vm);
    }
    if vms.len() > MAX_VMS {
        return Err(Exit::new(BAD_INPUT, format!("{} VMs: a network has at most {MAX_VMS}", vms.len())));
    }
    Ok(Network { options, vms })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(s: &str) -> Vec<OsString> {
        s.split_whitespace().map(OsString::from).collect()
    }

    #[test]
    fn options_belong_to_the_vm_before_them() {
        let n = parse(&words("--timeout 5 --vm ping --cmdline rounds=3 --vm pong --mem 64M")).unwrap();
        assert_eq!(n.options.timeout, Some(5.0));
        assert_eq!(n.vms.len(), 2);
        assert_eq!(n.vms[0].machine.kernel.as_deref(), Some("ping"));
        assert_eq!(n.vms[0].machine.cmdline.as_deref(), Some("rounds=3"));
        assert_eq!(n.vms[0].machine.mem, "128M");
        assert_eq!(n.vms[1].machine.kernel.as_deref(), Some("pong"));
        assert_eq!(n.vms[1].machine.cmdline, None);
        assert_eq!(n.vms[1].machine.mem, "64M");
    }

    #[test]
    fn the_output_dir_may_follow_any_vm_group() {
        let n = parse(&words("--vm ping --cmdline rounds=3 --vm pong -o out")).unwrap();
        assert_eq!(n.options.output.as_deref(), Some(std::path::Path::new("out")));
        assert_eq!(n.vms[1].machine.kernel.as_deref(), Some("pong"));
        let n = parse(&words("-o a --vm ping")).unwrap();
        assert_eq!(n.options.output.as_deref(), Some(std::path::Path::new("a")));
        let n = parse(&words("--vm ping --output=b --mem 64M")).unwrap();
        assert_eq!(n.options.output.as_deref(), Some(std::path::Path::new("b")));
        assert_eq!(n.vms[0].machine.mem, "64M");
        assert!(parse(&words("-o a --vm ping -o b")).unwrap_err().message.contains("-o given twice"));
        assert!(parse(&words("--vm ping -o")).unwrap_err().message.contains("-o needs a DIR"));
    }

    #[test]
    fn bad_groups_are_refused_with_the_reason() {
        let e = parse(&words("--vm --cmdline x")).unwrap_err();
        assert!(e.message.contains("KERNEL right after --vm"), "{}", e.message);
        let e = parse(&words("--vm ping --timeout 3")).unwrap_err();
        assert_eq!(e.code, BAD_INPUT);
        assert!(e.message.contains("--timeout"), "{}", e.message);
        let e = parse(&words("--vm a --disk x.img")).unwrap_err();
        assert!(e.message.contains("--disk"), "{}", e.message);
    }

    #[test]
    fn live_snapshot_options_come_together() {
        let n = parse(&words("--snapshot-every 50ms --snapshots d --keep 5 --vm ping")).unwrap();
        assert_eq!(n.options.snapshot_every, Some(std::time::Duration::from_millis(50)));
        assert_eq!(n.options.snapshots.as_deref(), Some(std::path::Path::new("d")));
        assert_eq!(n.options.keep, Some(5));
        for bad in ["--snapshots d --vm ping", "--snapshot-every 1s --vm ping", "--keep 2 --vm ping"] {
            let e = parse(&words(bad)).unwrap_err();
            assert_eq!(e.code, BAD_INPUT, "{bad}: {}", e.message);
        }
        assert_eq!(parse(&words("--snapshot-every 0s --snapshots d --vm a")).unwrap_err().code, BAD_INPUT);
    }
}
