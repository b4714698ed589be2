//! `ttvm disk TRACE`: the recorded disk's history. `--at ICOUNT -o OUT.img` writes the disk
//! as it was at that step; `--history SECTOR` lists every write to a sector with where the
//! guest queued it.

use std::path::PathBuf;

use clap::Args;
use ttvm_replay::disk_history::{sector_history, write_disk_at, DiskHistoryError};
use ttvm_replay::timeline::Timeline;

use crate::commands::replay::open_recording;
use crate::exit_code::{self, Exit};
use crate::options::SymbolArgs;

/// Arguments of `ttvm disk`.
#[derive(Debug, Args)]
pub struct DiskArgs {
    /// A trace recorded with `--disk`.
    pub trace: PathBuf,
    /// Write the disk as it was at the start of this step (every write completed before it).
    #[arg(long, value_name = "ICOUNT", requires = "output", conflicts_with = "history")]
    pub at: Option<u64>,
    /// Where `--at` writes the image.
    #[arg(short = 'o', long = "output", value_name = "OUT.img")]
    pub output: Option<PathBuf>,
    /// The image the recording started from; without it the image is built from the blocks
    /// the trace holds (every block the guest read), the rest zero.
    #[arg(long, value_name = "FILE", requires = "at")]
    pub base: Option<PathBuf>,
    /// List every write to this sector: when it completed, and where the guest queued it
    /// (RIP, and its function with --symbols; this replays up to each write).
    #[arg(long, value_name = "SECTOR")]
    pub history: Option<u64>,
    /// Kernel symbols for names in messages.
    #[command(flatten)]
    pub symbols: SymbolArgs,
}

fn history_exit(e: DiskHistoryError) -> Exit {
    let code = match e {
        DiskHistoryError::Io { .. } => exit_code::HOST_ERROR,
        _ => exit_code::BAD_INPUT,
    };
    Exit::new(code, e.to_string())
}

/// `ttvm disk`: the exit status.
pub fn run(args: DiskArgs) -> Result<i32, Exit> {
    let rec = open_recording(&args.trace)?;
    if let (Some(at), Some(out)) = (args.at, &args.output) {
        if at > rec.length() {
            return Err(Exit::new(exit_code::BAD_INPUT, format!("--at {at}: the trace holds {} steps", rec.length())));
        }
        let s = write_disk_at(&rec, at, args.base.as_deref(), out).map_err(history_exit)?;
        let from = match &args.base {
            Some(b) => format!("{} as the base", b.display()),
            None => format!("{} blocks from the trace as the base, the rest zero", s.base_blocks),
        };
        println!(
            "ttvm: wrote the disk at icount {at} to {} ({} sectors; {from}; {} writes applied)",
            out.display(),
            s.sectors,
            s.writes
        );
        return Ok(0);
    }
    let Some(sector) = args.history else {
        return Err(Exit::new(exit_code::BAD_INPUT, "give --at ICOUNT -o OUT.img or --history SECTOR"));
    };
    let writes = sector_history(&rec, sector).map_err(history_exit)?;
    if writes.is_empty() {
        println!("sector {sector}: never written in this trace");
        return Ok(0);
    }
    let symbols = args.symbols.load(Some(&rec.header().machine.kernel))?;
    let mut timeline = Timeline::new(rec.clone(), &ttvm_replay::stepping::host_signature())
        .map_err(|e| Exit::new(exit_code::KVM_INTERNAL, format!("{}: {e}", args.trace.display())))?;
    println!("sector {sector}: {} write(s)", writes.len());
    for w in writes {
        let queued = match w.notified_at {
            Some(n) => {
                timeline
                    .seek(n)
                    .map_err(|e| Exit::new(exit_code::DIVERGENCE, format!("replaying to icount {n}: {e}")))?;
                let rip = timeline.machine().vm.vcpu().rip();
                let name =
                    symbols.as_ref().and_then(|s| s.describe(rip)).map(|n| format!(" <{n}>")).unwrap_or_default();
                format!("queued at icount {n}, RIP {rip:#x}{name}")
            }
            None => "queue notify not in the trace".to_string(),
        };
        println!("  icount {:>12}  sectors {}..{}  {queued}", w.completed_at, w.sector, w.sector + w.sectors - 1);
    }
    Ok(0)
}
