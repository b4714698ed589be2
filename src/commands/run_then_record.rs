//! `ttvm run KERNEL --record-from-output REGEX -o TRACE`: boot with the free engine, then
//! record with the exact engine from the moment the guest prints a matching line.
//!
//! The free run's console output is watched line by line; the line that matches raises the
//! free engine's stop flag, so the run stops right after the port write that ended it. The
//! machine as it is then becomes the trace's checkpoint 0 (`RecordSession::start_from`), the
//! same hand-over as `ttvm record --from SNAPSHOT` without the file in between.

use std::io::IsTerminal;
use std::path::Path;
use std::sync::atomic::Ordering;

use ttvm_replay::clock::{ClockMode, EngineClock};
use ttvm_replay::record::{RecordOptions, RecordSession, RecordTo, DEFAULT_CHECKPOINT_EVERY};
use ttvm_vmm::clock::Clock;
use ttvm_vmm::console::{ConsoleOutput, WatchedOutput};
use ttvm_vmm::disk::DiskBackend;
use ttvm_vmm::free_run::{run_free, FreeRunEnd, FreeRunOptions};
use ttvm_vmm::snapshot;

use crate::commands::panic_watch::PanicWatch;
use crate::commands::record::{open_cow_disk, record_to_end, start_error_exit, summary};
use crate::commands::run::{FreeStart, RunArgs};
use crate::exit_code::{self, Exit};

/// Runs `free` until a line of its output matches `pattern`, then records it into `trace`.
pub fn run_then_record(free: FreeStart, pattern: &str, trace: &Path, args: &RunArgs) -> Result<i32, Exit> {
    let regex = regex::Regex::new(pattern).map_err(|e| {
        Exit::new(exit_code::BAD_INPUT, format!("--record-from-output: invalid regular expression: {e}"))
    })?;
    let stop = crate::signals::install_stop_flag();
    let watched = WatchedOutput::new(
        args.machine.serial.output(ConsoleOutput::Stdout)?,
        move |line: &[u8]| regex.is_match(&String::from_utf8_lossy(line)),
        stop,
    );
    let mut output = ConsoleOutput::Watched(Box::new(watched));
    let mut input = args.machine.serial.input()?;
    let FreeStart { mut machine, mut disk, clock, origin, symbols, live: _ } = free;
    let origin = origin.ok_or_else(|| Exit::new(exit_code::HOST_ERROR, "a booted machine without its origin"))?;
    let options = FreeRunOptions { timeout: args.free.timeout()?, symbols, stop: Some(stop), clock };
    let backend = disk.as_mut().map(|d| d.as_mut() as &mut dyn DiskBackend);
    let end =
        run_free(&mut machine, backend, &mut output, &mut input, &options, None, None).map_err(|e| Exit::of("", &e))?;
    // The free run wrote its disk in place; from here the recording only reads the image.
    drop(disk);
    let ConsoleOutput::Watched(watched) = output else {
        return Err(Exit::new(exit_code::HOST_ERROR, "the watched console output was replaced"));
    };
    let nothing = "nothing was recorded";
    match end {
        FreeRunEnd::Interrupted if watched.matched() => {}
        FreeRunEnd::Interrupted => {
            eprintln!("ttvm: interrupted before the output matched {pattern:?}; {nothing}");
            return Ok(exit_code::INTERRUPTED);
        }
        FreeRunEnd::Timeout => {
            return Err(Exit::new(
                exit_code::TIMEOUT,
                format!("timeout before the output matched {pattern:?}; {nothing}"),
            ))
        }
        FreeRunEnd::Guest { stop, .. } => {
            return Err(Exit::new(
                exit_code::CHECK_FAILED,
                format!("the guest stopped ({stop}) before its output matched {pattern:?}; {nothing}"),
            ))
        }
    }
    // The flag was raised by the match, not by the user: the recording watches it for Ctrl-C.
    stop.store(false, Ordering::SeqCst);
    let tsc = snapshot::guest_tsc(&machine).map_err(|e| Exit::of("", &e))?;
    let start_ns = options.clock.now_ns().max(EngineClock::ns_at_tsc(tsc));
    eprintln!(
        "ttvm: the output matched {pattern:?} at {:.3} s of device time; recording from here into {}",
        start_ns as f64 / 1e9,
        trace.display()
    );
    let record_options = RecordOptions {
        clock: ClockMode::Icount,
        checkpoint_every: DEFAULT_CHECKPOINT_EVERY,
        kernel_name: origin.kernel_name.clone(),
        stepping: ttvm_replay::stepping::host_signature(),
    };
    let disk = open_cow_disk(args.machine.disk.as_deref())?;
    let (output, panic) = PanicWatch::wrap(watched.into_inner(), stop);
    let to = RecordTo { path: trace, options: record_options, output, input };
    let session = RecordSession::start_from(machine, origin.machine, start_ns, disk, to)
        .map_err(|e| start_error_exit(&origin.kernel_name, trace, e))?;
    let r = record_to_end(session, trace, None, Some(&panic), std::io::stderr().is_terminal())?;
    eprintln!("{}", summary(trace, &r));
    Ok(r.exit_status)
}
