//! `ttvm check`: one command for CI: replay a committed trace, verify it bit-for-bit, and
//! check that the recorded outcome is the expected one.

use std::path::PathBuf;

use clap::Args;
use ttvm_replay::events::StopKind;

use crate::commands::replay::{open_recording, verify_whole};
use crate::exit_code::{self, Exit};

/// Arguments of `ttvm check`.
#[derive(Clone, Debug, Args)]
pub struct CheckArgs {
    /// The trace file.
    pub trace: PathBuf,
    /// The guest's recorded exit status (debug-exit port) must be N.
    #[arg(long, value_name = "N")]
    pub expect_exit: Option<u32>,
    /// The recorded serial output must match this regular expression.
    #[arg(long, value_name = "REGEX")]
    pub expect_output: Option<String>,
    /// The whole trace file must have this SHA-256 (as `ttvm info` and `sha256sum` print
    /// it): pins a committed trace, so CI checks exactly the file that was reviewed.
    #[arg(long, value_name = "HEX")]
    pub expect_sha256: Option<String>,
}

/// The SHA-256 of a whole file, in lowercase hex.
pub fn file_sha256(path: &std::path::Path) -> std::io::Result<String> {
    use sha2::{Digest, Sha256};
    let mut hasher = Sha256::new();
    let mut file = std::fs::File::open(path)?;
    std::io::copy(&mut file, &mut hasher)?;
    Ok(hasher.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

/// `ttvm check`: the exit status.
pub fn run(args: CheckArgs) -> Result<i32, Exit> {
    if args.trace.is_dir() {
        // A network recording: each VM's trace as here, then the frames across them.
        return crate::commands::network::dir::check(&args);
    }
    let fail = |code: i32, reason: String| Exit::new(code, format!("check FAILED: {}: {reason}", args.trace.display()));
    let pattern = match &args.expect_output {
        Some(p) => Some(regex::Regex::new(p).map_err(|e| {
            Exit::new(exit_code::BAD_INPUT, format!("--expect-output: invalid regular expression: {e}"))
        })?),
        None => None,
    };
    if let Some(want) = &args.expect_sha256 {
        let want = want.trim().to_ascii_lowercase();
        if want.len() != 64 || !want.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(Exit::new(exit_code::BAD_INPUT, "--expect-sha256: expected 64 hex digits".to_string()));
        }
        let have = file_sha256(&args.trace)
            .map_err(|e| Exit::new(exit_code::BAD_INPUT, format!("{}: {e}", args.trace.display())))?;
        if have != want {
            return Err(fail(
                exit_code::CHECK_FAILED,
                format!("the file's SHA-256 is {have}, not the pinned {want}: it is not the trace that was pinned"),
            ));
        }
    }
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
