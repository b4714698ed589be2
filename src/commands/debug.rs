//! `ttvm debug`: record live with gdb attached. Continuing past the end of history executes
//! and records new instructions; going back replays what has been recorded.

use std::path::PathBuf;

use clap::Args;
use ttvm_replay::clock::ClockMode;
use ttvm_replay::record::{RecordEnd, RecordOptions, RecordSession, DEFAULT_CHECKPOINT_EVERY};
use ttvm_replay::timeline::Timeline;
use ttvm_vmm::console::ConsoleOutput;

use crate::commands::record::{default_output, ClockArg};
use crate::exit_code::{self, Exit};
use crate::options::MachineArgs;

/// Arguments of `ttvm debug`.
#[derive(Debug, Args)]
pub struct DebugArgs {
    /// The machine: kernel, RAM, command line, serial, initrd, disk.
    #[command(flatten)]
    pub machine: MachineArgs,
    /// Where gdb connects: [ADDR:]PORT (ADDR defaults to 127.0.0.1).
    #[arg(long, value_name = "[ADDR:]PORT")]
    pub gdb: String,
    /// Trace file written while debugging (default: NAME.ttvm).
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// How guest time is derived.
    #[arg(long, value_enum, default_value = "icount")]
    pub clock: ClockArg,
    /// Steps between checkpoints.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_CHECKPOINT_EVERY, value_parser = clap::value_parser!(u64).range(1..))]
    pub checkpoint_every: u64,
    /// Kernel symbols for names in messages.
    #[command(flatten)]
    pub symbols: crate::options::SymbolArgs,
}

/// `ttvm debug`: the exit status.
pub fn run(args: DebugArgs) -> Result<i32, Exit> {
    let addr = ttvm_gdb::parse_listen_addr(&args.gdb).map_err(|e| Exit::of("", &e))?;
    // Bind before building the machine: a port in use is reported before anything runs.
    let listener = crate::commands::gdb_server::bind_gdb(addr)?;
    let (config, name) = args.machine.config()?;
    let symbols = args.symbols.load(Some(&config.kernel))?;
    let output = match &args.output {
        Some(o) => o.clone(),
        None => default_output(args.machine.kernel_name()?),
    };
    let console = args.machine.serial.output(ConsoleOutput::Stdout)?;
    let input = args.machine.serial.input()?;
    let stepping = ttvm_replay::stepping::host_signature();
    let options = RecordOptions {
        clock: ClockMode::from(args.clock),
        checkpoint_every: args.checkpoint_every,
        kernel_name: name.clone(),
        stepping: stepping.clone(),
    };
    let session =
        RecordSession::start_with_disk(config, &output, options, console, input, args.machine.disk.as_deref())
            .map_err(|e| crate::commands::record::start_error_exit(&name, &output, e))?;
    let mut timeline = Timeline::live(session, &output, &stepping)
        .map_err(|e| Exit::new(exit_code::HOST_ERROR, format!("{}: {e}", output.display())))?;
    let local = listener.local_addr().map_err(|e| Exit::new(exit_code::HOST_ERROR, e.to_string()))?;
    let bzimage = ttvm_vmm::boot::bzimage::is_bzimage(&timeline.recording().header().machine.kernel);
    let kernel = args.machine.kernel_name()?;
    let elf = match ttvm_sample_kernels::get(kernel) {
        Some(k) if !std::path::Path::new(kernel).is_file() => k.path.to_string(),
        _ if bzimage => "VMLINUX".to_string(),
        _ => kernel.to_string(),
    };
    if bzimage {
        eprintln!("ttvm: {}", crate::commands::gdb_server::BZIMAGE_GDB_NOTE);
    }
    eprintln!(
        "ttvm: recording {name} live into {}; serving to gdb on {local} — connect with: gdb {elf} -ex 'target remote {local}'",
        output.display()
    );
    let served = ttvm_gdb::serve_with_symbols(&mut timeline, listener, symbols);
    let end = match timeline.live_stop() {
        Some(stop) => RecordEnd::Guest(stop.clone()),
        None => RecordEnd::Detached,
    };
    let session =
        timeline.live_session().ok_or_else(|| Exit::new(exit_code::HOST_ERROR, "the live recording is gone"))?;
    let progress = session
        .finish(&end)
        .map_err(|e| Exit::new(exit_code::HOST_ERROR, format!("finalising {}: {e}", output.display())))?;
    eprintln!(
        "ttvm: debug session ended ({}); {} steps recorded in {}",
        end.reason(),
        progress.steps,
        output.display()
    );
    served.map_err(|e| Exit::of("", &e))?;
    Ok(0)
}
