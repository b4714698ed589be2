//! Frame render time and keypress-to-screen latency of `ttvm tui` on a trace:
//! `cargo run --release -p ttvm-tui --example tui_bench -- TRACE [WIDTHxHEIGHT] [REPS]`.

use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let Some(trace) = args.next().map(PathBuf::from) else {
        eprintln!("usage: tui_bench TRACE [WIDTHxHEIGHT] [REPS]");
        return ExitCode::from(2);
    };
    let size = args
        .next()
        .and_then(|s| {
            let (w, h) = s.split_once('x')?;
            Some((w.parse().ok()?, h.parse().ok()?))
        })
        .unwrap_or((160, 48));
    let reps = args.next().and_then(|r| r.parse().ok()).unwrap_or(50);
    match ttvm_tui::bench::measure(&trace, size, reps) {
        Ok(report) => {
            print!("{report}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("tui_bench: {}: {e}", trace.display());
            ExitCode::FAILURE
        }
    }
}
