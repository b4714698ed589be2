//! `ttvm`: a time-travelling virtual machine monitor for KVM.

use ttvm::commands;

use clap::{Parser, Subcommand};

/// A time-travelling virtual machine monitor: record a kernel under KVM, replay it
/// bit-for-bit, and debug it backwards with gdb.
#[derive(Debug, Parser)]
#[command(name = "ttvm", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Boot a kernel with the free-running engine (nothing is recorded).
    Run(commands::run::RunArgs),
    /// Continue a free run from a snapshot written by `ttvm run --save-state` (or a network
    /// from `ttvm snapshot`'s directory).
    Resume(commands::run::ResumeArgs),
    /// A consistent snapshot of a recorded network at a cut through VM:ICOUNT (`resume` continues it).
    Snapshot(commands::network::snapshot::SnapshotArgs),
    /// Record a kernel with the exact engine into a trace file.
    Record(commands::record::RecordArgs),
    /// Replay a trace, checking it step by step (or serve it to gdb with --gdb).
    Replay(commands::replay::ReplayArgs),
    /// Go on from any step of a recorded history as a new recording (or --run: a free run).
    Branch(commands::branch::BranchArgs),
    /// Record live with gdb attached: go back through what was recorded, continue into new territory.
    Debug(commands::debug::DebugArgs),
    /// The recorded disk: as it was at any step (--at), every write to a sector (--history).
    Disk(commands::disk::DiskArgs),
    /// Show what a trace holds.
    Info(commands::info::InfoArgs),
    /// For CI: verify a trace replays bit-for-bit and that it recorded the expected outcome.
    Check(commands::check::CheckArgs),
    /// List the bundled sample kernels or extract one as an ELF file.
    Kernels(commands::kernels::KernelsArgs),
    /// Open a trace in the terminal UI.
    Tui(commands::tui::TuiArgs),
    /// Measure ttvm against the single-step ceiling and QEMU record/replay (runs the
    /// separately built `ttvm-bench` harness with these arguments; `--help` lists them).
    #[command(disable_help_flag = true)]
    Bench {
        /// Arguments for ttvm-bench.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<std::ffi::OsString>,
    },
}

fn main() {
    // `run --vm … --vm …` groups options by VM, which clap cannot express: parsed apart.
    let words: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    if commands::network::is_network_command(&words) {
        exit_with(commands::network::main(&words));
    }
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run(a) => commands::run::run(a),
        Command::Resume(a) => commands::run::resume(a),
        Command::Snapshot(a) => commands::network::snapshot::run(a),
        Command::Record(a) => commands::record::run(a),
        Command::Replay(a) => commands::replay::run(a),
        Command::Branch(a) => commands::branch::run(a),
        Command::Debug(a) => commands::debug::run(a),
        Command::Disk(a) => commands::disk::run(a),
        Command::Info(a) => commands::info::run(a),
        Command::Check(a) => commands::check::run(a),
        Command::Kernels(a) => commands::kernels::run(a),
        Command::Tui(a) => commands::tui::run(a),
        Command::Bench { args } => commands::bench::run(&args),
    };
    exit_with(result);
}

/// Prints the error, if any, and exits with the command's status.
fn exit_with(result: Result<i32, ttvm::exit_code::Exit>) -> ! {
    let code = match result {
        Ok(code) => code,
        Err(e) => {
            if !e.message.is_empty() {
                eprintln!("ttvm: {}", e.message);
            }
            e.code
        }
    };
    std::process::exit(code);
}
