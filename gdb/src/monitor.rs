//! `monitor` commands: parsing (here) and carrying them out ([`crate::monitor_exec`]).
//!
//! gdb passes the text after `monitor` verbatim, so numbers are plain: decimal, or hex with
//! `0x`. To use a symbol, let gdb format it: `eval "monitor last-write %p 8", &COUNTER`.
//! A monitor command cannot fail at the protocol level (gdbstub would end the session), so
//! every problem is printed as a line starting with `error:` and the session goes on.
//!
//! `monitor info version` answers on purpose: Linux's gdb scripts (`vmlinux-gdb.py`,
//! `scripts/gdb/linux/utils.py`) ask it to tell QEMU's stub from kgdb, and with QEMU's
//! answer take gdb thread N for CPU N-1, which is ttvm's model too (one thread per vCPU).
//! `$lx_current()`, `$lx_per_cpu()` and `lx-cpus` depend on it.

use gdbstub::target::ext::monitor_cmd::{outputln, ConsoleOutput, MonitorCmd};
use ttvm_replay::timeline::{WatchKind, Watchpoint};

use crate::error::GdbError;
use crate::target::TtvmTarget;

/// Most lines `monitor events` prints.
pub const MAX_EVENT_LINES: usize = 200;
/// Default length for `monitor last-write ADDR` (one 64-bit word).
pub const DEFAULT_WRITE_LEN: u64 = 8;

/// The help text.
pub const HELP: &str = "\
ttvm monitor commands (positions are icounts: steps since reset):
  monitor when                  current icount, nearest checkpoints, history length
  monitor goto ICOUNT|+N|-N     move to an icount (absolute, or relative to now); for a VM
                                of a network served with `replay DIR --gdb`, the other VMs
                                move to the consistent cut through the new position
  monitor checkpoints           the trace's checkpoints and the in-memory ones
  monitor events [FROM [TO]]    recorded events (default: around the current icount)
  monitor info                  trace summary, position, statistics
  monitor info version          ttvm's version (Linux's gdb scripts probe it)
  monitor last-write ADDR [LEN] go back to the last instruction that changed
                                [ADDR, ADDR+LEN) (LEN default 8): who wrote this?
  monitor serial                the guest's serial output up to now
  monitor disk-history SECTOR   every recorded write to a disk sector: the icount it
                                completed and the icount the guest queued it at
  monitor branch FILE           branch history here: register and memory writes are
                                allowed from now on, and `continue`/stepping records the
                                new branch into FILE (a trace naming this one as parent);
                                the session's history is then this trace's up to here,
                                followed by the branch's (reverse execution crosses back)
  monitor frames                for a VM of a network recording: the frames it sent and
                                received around now, with their other ends
Numbers are decimal or 0x-hex. After goto and last-write, refresh gdb's view with
  maintenance flush register-cache
(gdb caches registers and does not know the position moved).";

/// Where `goto` goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GotoTarget {
    /// An icount.
    Absolute(u64),
    /// N steps later.
    Forward(u64),
    /// N steps earlier.
    Back(u64),
}

/// A parsed monitor command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// `help`
    Help,
    /// `when`
    When,
    /// `goto`
    Goto(GotoTarget),
    /// `checkpoints`
    Checkpoints,
    /// `events [FROM [TO]]`
    Events {
        /// First icount.
        from: Option<u64>,
        /// End icount (exclusive).
        to: Option<u64>,
    },
    /// `info`
    Info,
    /// `info version` (also `version`)
    Version,
    /// `last-write ADDR [LEN]`
    LastWrite {
        /// Start address (guest-virtual).
        addr: u64,
        /// Length in bytes.
        len: u64,
    },
    /// `serial`
    Serial,
    /// `disk-history SECTOR`
    DiskHistory {
        /// The sector.
        sector: u64,
    },
    /// `frames`
    Frames,
    /// `branch FILE`
    Branch {
        /// The new trace.
        file: std::path::PathBuf,
    },
}

/// What `monitor info version` prints: never empty, since an empty answer tells Linux's
/// scripts that this is not QEMU's stub (and `$lx_current()` then fails).
pub fn version_line() -> String {
    format!("ttvm {} (time-travelling VMM; gdb thread N is vCPU N-1)", env!("CARGO_PKG_VERSION"))
}

/// Parses a number: decimal, or hex with `0x`; `_` separators allowed.
pub fn parse_number(text: &str) -> Result<u64, String> {
    let t: String = text.chars().filter(|c| *c != '_').collect();
    let parsed = match t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => t.parse::<u64>(),
    };
    parsed.map_err(|_| format!("{text:?} is not a number (decimal, or hex with 0x)"))
}

fn no_more(args: &[&str], usage: &str) -> Result<(), String> {
    match args.is_empty() {
        true => Ok(()),
        false => Err(format!("unexpected {:?}; usage: monitor {usage}", args.join(" "))),
    }
}

/// Parses the text gdb passed after `monitor`.
pub fn parse(text: &str) -> Result<Command, String> {
    let words: Vec<&str> = text.split_whitespace().collect();
    let Some((&name, args)) = words.split_first() else { return Ok(Command::Help) };
    let cmd = match name {
        "help" | "?" => Command::Help,
        "when" => {
            no_more(args, "when")?;
            Command::When
        }
        "goto" | "seek" => {
            let [target] = args else { return Err("usage: monitor goto ICOUNT|+N|-N".into()) };
            Command::Goto(if let Some(n) = target.strip_prefix('+') {
                GotoTarget::Forward(parse_number(n)?)
            } else if let Some(n) = target.strip_prefix('-') {
                GotoTarget::Back(parse_number(n)?)
            } else {
                GotoTarget::Absolute(parse_number(target)?)
            })
        }
        "checkpoints" => {
            no_more(args, "checkpoints")?;
            Command::Checkpoints
        }
        "events" => {
            let from = args.first().map(|a| parse_number(a)).transpose()?;
            let to = args.get(1).map(|a| parse_number(a)).transpose()?;
            no_more(args.get(2..).unwrap_or(&[]), "events [FROM [TO]]")?;
            if let (Some(f), Some(t)) = (from, to) {
                if t < f {
                    return Err(format!("TO ({t}) is before FROM ({f})"));
                }
            }
            Command::Events { from, to }
        }
        "info" => match args {
            [] => Command::Info,
            ["version"] => Command::Version,
            _ => return Err(format!("unexpected {:?}; usage: monitor info [version]", args.join(" "))),
        },
        "version" => {
            no_more(args, "version")?;
            Command::Version
        }
        "last-write" | "last_write" | "lastwrite" => {
            let (addr, len) = match args {
                [a] => (parse_number(a)?, DEFAULT_WRITE_LEN),
                [a, l] => (parse_number(a)?, parse_number(l)?),
                _ => return Err("usage: monitor last-write ADDR [LEN]".into()),
            };
            // The timeline's rule for which ranges can be watched.
            if Watchpoint::new(addr, len, WatchKind::Write).is_err() {
                return Err(format!(
                    "LEN must be 1..={} and the range must not wrap",
                    crate::breakpoints::MAX_WATCH_LEN
                ));
            }
            Command::LastWrite { addr, len }
        }
        "serial" => {
            no_more(args, "serial")?;
            Command::Serial
        }
        "disk-history" | "disk_history" => {
            let [sector] = args else { return Err("usage: monitor disk-history SECTOR".into()) };
            Command::DiskHistory { sector: parse_number(sector)? }
        }
        "frames" => {
            no_more(args, "frames")?;
            Command::Frames
        }
        "branch" => {
            if args.is_empty() {
                return Err("usage: monitor branch FILE".into());
            }
            Command::Branch { file: args.join(" ").into() }
        }
        other => return Err(format!("unknown command {other:?}; `monitor help` lists them")),
    };
    Ok(cmd)
}

impl MonitorCmd for TtvmTarget<'_> {
    fn handle_monitor_cmd(&mut self, cmd: &[u8], mut out: ConsoleOutput<'_>) -> Result<(), GdbError> {
        let text = String::from_utf8_lossy(cmd);
        match parse(&text) {
            Ok(c) => {
                let report = self.run_monitor(c);
                // `outputln!` adds the final newline.
                outputln!(out, "{}", report.trim_end());
            }
            Err(e) => outputln!(out, "error: {e}"),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_parse() {
        assert_eq!(parse(""), Ok(Command::Help));
        assert_eq!(parse("  when "), Ok(Command::When));
        assert_eq!(parse("goto 1_000"), Ok(Command::Goto(GotoTarget::Absolute(1000))));
        assert_eq!(parse("goto 0x10"), Ok(Command::Goto(GotoTarget::Absolute(16))));
        assert_eq!(parse("goto +5"), Ok(Command::Goto(GotoTarget::Forward(5))));
        assert_eq!(parse("goto -5"), Ok(Command::Goto(GotoTarget::Back(5))));
        assert_eq!(parse("events"), Ok(Command::Events { from: None, to: None }));
        assert_eq!(parse("events 10 20"), Ok(Command::Events { from: Some(10), to: Some(20) }));
        assert_eq!(
            parse("last-write 0xffff800000001000"),
            Ok(Command::LastWrite { addr: 0xffff_8000_0000_1000, len: 8 })
        );
        assert_eq!(parse("last-write 4096 2"), Ok(Command::LastWrite { addr: 4096, len: 2 }));
        assert_eq!(parse("checkpoints"), Ok(Command::Checkpoints));
        assert_eq!(parse("info"), Ok(Command::Info));
        assert_eq!(parse("info version"), Ok(Command::Version));
        assert_eq!(parse("version"), Ok(Command::Version));
        assert_eq!(parse("serial"), Ok(Command::Serial));
        assert_eq!(parse("disk-history 0x10"), Ok(Command::DiskHistory { sector: 16 }));
        assert_eq!(parse("branch /tmp/b.ttvm"), Ok(Command::Branch { file: "/tmp/b.ttvm".into() }));
        assert!(parse("branch").is_err(), "a branch needs its file");
    }

    #[test]
    fn version_names_ttvm_and_its_thread_model() {
        let v = version_line();
        assert!(v.starts_with(&format!("ttvm {} ", env!("CARGO_PKG_VERSION"))), "{v}");
        assert!(v.contains("thread N is vCPU N-1"), "{v}");
        assert!(HELP.contains("monitor info version"), "help lists it");
    }

    #[test]
    fn garbage_gives_a_message_not_a_panic() {
        for bad in [
            "goto",
            "goto abc",
            "goto 1 2",
            "goto 99999999999999999999999",
            "goto 0x",
            "events x",
            "events 5 1",
            "events 1 2 3",
            "last-write",
            "last-write 0x10 0",
            "last-write 0xffffffffffffffff 8",
            "last-write 1 2 3",
            "when now",
            "frobnicate",
            "goto -",
            "disk-history",
            "disk-history x",
            "disk-history 1 2",
            "info versions",
            "info version now",
            "version 2",
        ] {
            let e = parse(bad).expect_err(bad);
            assert!(!e.is_empty(), "{bad}");
        }
    }
}
