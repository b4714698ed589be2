//! `ttvm bench ARGS`: runs the benchmark harness, `ttvm-bench`, which is its own workspace
//! member so that it (QEMU and gdb drivers, a raw KVM loop, statistics) stays out of the
//! product binary. It is looked for next to this executable, where cargo builds both.

use std::ffi::OsString;
use std::os::unix::process::CommandExt;

use crate::exit_code::{self, Exit};

/// Replaces this process with `ttvm-bench ARGS`; returns only if that cannot start.
pub fn run(args: &[OsString]) -> Result<i32, Exit> {
    let exe = std::env::current_exe()
        .map_err(|e| Exit::new(exit_code::HOST_ERROR, format!("cannot find the ttvm executable: {e}")))?;
    let harness = exe.with_file_name("ttvm-bench");
    if !harness.exists() {
        return Err(Exit::new(
            exit_code::BAD_INPUT,
            format!(
                "{} is not built: the benchmark harness is a separate binary \
                 (`cargo build --release -p ttvm-bench`, or run scripts/bench.sh, which builds it)",
                harness.display()
            ),
        ));
    }
    let e = std::process::Command::new(&harness).args(args).exec();
    Err(Exit::new(exit_code::HOST_ERROR, format!("cannot run {}: {e}", harness.display())))
}
