//! `ttvm check`: one command for CI: replay a committed trace, verify it bit-for-bit, and
//! check that the recorded outcome is the expected one.

use std::path::PathBuf;

use clap::Args;
use ttvm_replay::events::StopKind;

use crate::commands::replay::{open_recording, verify_whole};
use crate::exit_code::{self, Exit};

/// Arguments of `ttvm check`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The trace file.
    pub trace: PathBuf,
    /// The guest's recorded exit status (debug-exit port) must be N.
    #[arg(long, value_name = "N")]
    pub expect_exit: Option<u32>,
    /// The recorded serial output must match this regular expression.
    #[arg(long, value_name = "REGEX")]
    pub expect_output: Option<String>,
}

pub fn run(args: CheckArgs) -> Result<i32, Exit> {
    let fail = |code: i32, reason: String| Exit::new(code, format!("check FAILED: {}: {reason}", args.trace.display()));
    let pattern = match &args.expect_output {
        Some(p) => Some(regex::Regex::new(p).map_err(|e| {
            Exit::new(exit_code::BAD_INPUT, format!("--expect-output: invalid regular expression: {e}"))
        })?),
        None => None,
    };
    let rec = open_recording(&args.trace).map_err(|e| fail(e.code, e.message))?;
    let Some(end) = rec.end.clone() else {
        return Err(fail(exit_code::CHECK_FAILED, "the trace was not finalised, so its outcome is unknown".into()));
    };
    let (steps, secs) =
        verify_whole(&args.trace, rec.clone(), false).map_err(|e| fail(e.code, e.message.replace('\n', " ")))?;
    if let Some(want) = args.expect_exit {
        if end.stop != Some(StopKind::DebugExit(want)) {
            return Err(fail(
                exit_code::CHECK_FAILED,
                format!("expected exit status {want}, but the recording ended with: {}", end.reason),
            ));
        }
    }
    let output = String::from_utf8_lossy(&rec.serial_output_before(u64::MAX)).into_owned();
    if let Some(re) = &pattern {
        if !re.is_match(&output) {
            let last = output.lines().last().unwrap_or("");
            return Err(fail(
                exit_code::CHECK_FAILED,
                format!("serial output does not match /{}/ (last line: {last:?})", re.as_str()),
            ));
        }
    }
    println!(
        "check ok: {}: {steps} steps replayed bit-for-bit in {secs:.1} s; recorded outcome: {}",
        args.trace.display(),
        end.reason
    );
    Ok(0)
}
