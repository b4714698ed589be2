//! `ttvm run --vm KERNEL [options] --vm KERNEL [options] …`: several VMs on one virtual
//! switch. clap cannot group options by the `--vm` before them, so `main` hands such
//! command lines here: the words before the first `--vm` are the network's options, each
//! `--vm` starts one VM's group, parsed on its own.

pub mod args;
pub mod dir;
pub mod gdb;
pub mod live_snapshot;
pub mod port;
pub mod record;
pub mod resume;
pub mod run;
pub mod snapshot;
pub mod snapshot_info;

use std::ffi::OsString;

use crate::exit_code::Exit;

/// Whether `args` (without the program name) is a network command line: `run` or `record`
/// with `--vm`.
pub fn is_network_command(args: &[OsString]) -> bool {
    args.first().is_some_and(|c| c == "run" || c == "record") && args.iter().any(|a| a == "--vm")
}

/// Runs a network command line (see [`is_network_command`]); the process exit status.
pub fn main(args: &[OsString]) -> Result<i32, Exit> {
    let parsed = args::parse(&args[1..])?;
    if args.first().is_some_and(|c| c == "record") {
        return record::record(parsed);
    }
    run::run(parsed)
}
