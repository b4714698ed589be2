//! Reverse-debugging latency as a user sees it: the real gdb, in batch mode, against
//! `ttvm replay --gdb` and against QEMU's replay gdb stub, on the same kernel ELF.
//!
//! Positions are "steps into the trace" counted from the kernel's entry (`kmain`), because
//! QEMU runs ~6.5 M instructions of SeaBIOS and option ROM before it: a ttvm position P
//! corresponds to QEMU icount `qemu_kmain + (P - ttvm_kmain)`.
//! - ttvm: `monitor goto P`, then `reverse-stepi` N times (the first after a goto, then
//!   repeated), `reverse-continue` to a breakpoint ~1 M steps back, `monitor goto` to
//!   random icounts.
//! - QEMU 7.2: `monitor replay_break P` + `continue` (forward only, so one QEMU per
//!   position), then `reverse-stepi` N times and `reverse-continue` likewise. QEMU 7.2's
//!   reverse execution deadlocks intermittently on these hosts; a silent session is killed
//!   after a timeout, counted as a hang, and retried.

use std::path::Path;
use std::time::Duration;

use serde::Serialize;
use serde_json::json;

use crate::gdb_session::{self, SessionOutput, Stub};
use crate::stats::Latency;

/// Silence after which a ttvm session counts as hung (a 10 M-step reverse-continue replays
/// for minutes on a loaded host).
const TTVM_IDLE: Duration = Duration::from_secs(1800);
/// Silence after which a QEMU session counts as hung (its operations take well under a
/// second when they work).
const QEMU_IDLE: Duration = Duration::from_secs(30);
/// QEMU sessions tried per measurement.
const QEMU_ATTEMPTS: usize = 3;

/// What to measure.
#[derive(Clone, Debug)]
pub struct Plan {
    /// Positions (ttvm icounts) for reverse-stepi.
    pub positions: Vec<u64>,
    /// reverse-stepi per position.
    pub rsi_count: usize,
    /// reverse-continue: from this ttvm icount, breakpoint address, expected stop icount.
    pub rc: Option<(u64, u64, u64)>,
    /// Random `monitor goto` targets (ttvm only).
    pub gotos: Vec<u64>,
}

/// reverse-stepi at one position.
#[derive(Clone, Debug, Serialize)]
pub struct PositionLatency {
    /// The position, in ttvm steps into the trace.
    pub steps_into_trace: u64,
    /// The icount asked for on this stub.
    pub icount: u64,
    /// The icount reached.
    pub reached: i64,
    /// Time to get there (ttvm: `monitor goto`; QEMU: replay_break + continue).
    pub position_ms: f64,
    /// The first reverse-stepi after arriving.
    pub first_ms: Option<f64>,
    /// The following ones.
    pub repeated: Latency,
    /// Every reverse-stepi moved back exactly one step.
    pub each_one_step: bool,
}

/// reverse-continue to a breakpoint.
#[derive(Clone, Debug, Serialize)]
pub struct ReverseContinue {
    /// Where it started (this stub's icount).
    pub from: u64,
    /// Breakpoint address.
    pub addr: u64,
    /// Where it stopped.
    pub stopped_at: i64,
    /// Steps back.
    pub span: i64,
    /// Where ttvm's timeline says the last hit is (ttvm only).
    pub expected_at: Option<u64>,
    /// Wall time.
    pub ms: f64,
}

/// Everything measured on one stub.
#[derive(Clone, Debug, Default, Serialize)]
pub struct GdbLatency {
    /// "ttvm" or "qemu".
    pub stub: String,
    /// The stub's icount at `kmain`.
    pub kmain_icount: Option<u64>,
    /// reverse-stepi per position.
    pub positions: Vec<PositionLatency>,
    /// reverse-continue.
    pub reverse_continue: Option<ReverseContinue>,
    /// Random `monitor goto`.
    pub goto: Option<Latency>,
    /// gdb sessions run.
    pub sessions: usize,
    /// Sessions killed by the watchdog.
    pub hangs: usize,
    /// Errors reported by gdb or the stub.
    pub errors: Vec<String>,
}

fn num<T: std::str::FromStr>(m: &[String], i: usize) -> Option<T> {
    m.get(i).and_then(|s| s.parse().ok())
}

fn marks<'a>(out: &'a SessionOutput, kind: &'a str) -> impl Iterator<Item = &'a [String]> + 'a {
    out.marks.iter().filter(move |m| m.first().map(String::as_str) == Some(kind)).map(|m| &m[1..])
}

fn collect_errors(out: &SessionOutput, into: &mut Vec<String>) {
    for m in marks(out, "error") {
        into.push(m.join(" "));
    }
    if !out.marks.iter().any(|m| m.first().map(String::as_str) == Some("ready")) {
        let tail: Vec<&str> = out.log.lines().rev().take(3).collect();
        into.push(format!("gdb never attached: {}", tail.into_iter().rev().collect::<Vec<_>>().join(" | ")));
    }
}

/// A timed operation: (milliseconds, icount afterwards).
type Sample = (f64, i64);

/// (position ms, reached icount) and the reverse-stepi samples for `tag`.
fn position_marks(out: &SessionOutput, tag: &str) -> (Option<Sample>, Vec<Sample>) {
    let pos = marks(out, "pos").find(|m| m.first().map(String::as_str) == Some(tag));
    let pos = pos.and_then(|m| Some((num(m, 2)?, num(m, 3)?)));
    let rsi = marks(out, "rsi")
        .filter(|m| m.first().map(String::as_str) == Some(tag))
        .filter_map(|m| Some((num(m, 2)?, num(m, 3)?)))
        .collect();
    (pos, rsi)
}

/// Whether each reverse-stepi, starting at `reached`, moved back exactly one step.
fn one_step_each(reached: i64, rsi: &[Sample]) -> bool {
    let mut prev = reached;
    rsi.iter().all(|&(_, at)| {
        let ok = at == prev - 1;
        prev = at;
        ok
    })
}

fn summarise(steps: u64, icount: u64, pos: Option<Sample>, rsi: &[Sample]) -> PositionLatency {
    let (position_ms, reached) = pos.unwrap_or((f64::NAN, -1));
    let each_one_step = !rsi.is_empty() && one_step_each(reached, rsi);
    PositionLatency {
        steps_into_trace: steps,
        icount,
        reached,
        position_ms,
        first_ms: rsi.first().map(|r| r.0),
        repeated: Latency::from_ms(rsi.iter().skip(1).map(|r| r.0).collect()),
        each_one_step,
    }
}

/// Measures ttvm through `ttvm replay TRACE --gdb`, in one gdb session.
pub fn ttvm(trace: &Path, elf: &Path, plan: &Plan, workdir: &Path) -> Result<GdbLatency, String> {
    let mut ops = vec![json!({"op": "break_run", "symbol": "kmain"})];
    for &p in &plan.positions {
        ops.push(json!({"op": "pos", "tag": p.to_string(), "icount": p}));
        ops.push(json!({"op": "rsi", "tag": p.to_string(), "count": plan.rsi_count}));
    }
    if let Some((from, addr, _)) = plan.rc {
        ops.push(json!({"op": "pos", "tag": "rc", "icount": from}));
        ops.push(json!({"op": "rc", "tag": "rc", "addr": addr}));
    }
    for &g in &plan.gotos {
        ops.push(json!({"op": "goto", "icount": g}));
    }
    let out = gdb_session::run(&Stub::Ttvm { trace }, elf, &ops, workdir, TTVM_IDLE)?;
    let mut r = GdbLatency { stub: "ttvm".into(), sessions: 1, hangs: usize::from(out.hung), ..Default::default() };
    collect_errors(&out, &mut r.errors);
    r.kmain_icount = marks(&out, "at").next().and_then(|m| num(m, 1));
    for &p in &plan.positions {
        let (pos, rsi) = position_marks(&out, &p.to_string());
        r.positions.push(summarise(p, p, pos, &rsi));
    }
    if let Some((from, addr, expected)) = plan.rc {
        r.reverse_continue = marks(&out, "rc").next().and_then(|m| {
            let stopped_at: i64 = num(m, 2)?;
            Some(ReverseContinue {
                from,
                addr,
                stopped_at,
                span: from as i64 - stopped_at,
                expected_at: Some(expected),
                ms: num(m, 1)?,
            })
        });
    }
    let gotos: Vec<f64> = marks(&out, "goto").filter_map(|m| num(m, 1)).collect();
    if !plan.gotos.is_empty() {
        r.goto = Some(Latency::from_ms(gotos));
    }
    Ok(r)
}

/// Maps a ttvm position to QEMU's icount (both counted from `kmain`).
fn to_qemu(p: u64, ttvm_kmain: u64, qemu_kmain: u64) -> u64 {
    qemu_kmain + p.saturating_sub(ttvm_kmain)
}

/// Measures QEMU's replay gdb stub. `ttvm_kmain` aligns the positions.
pub fn qemu(stub: &Stub<'_>, elf: &Path, plan: &Plan, ttvm_kmain: u64, workdir: &Path) -> Result<GdbLatency, String> {
    let mut r = GdbLatency { stub: "qemu".into(), ..Default::default() };
    let session = |ops: &[serde_json::Value], r: &mut GdbLatency| -> Result<SessionOutput, String> {
        let out = gdb_session::run(stub, elf, ops, workdir, QEMU_IDLE)?;
        r.sessions += 1;
        r.hangs += usize::from(out.hung);
        collect_errors(&out, &mut r.errors);
        Ok(out)
    };
    let probe = session(&[json!({"op": "break_run", "symbol": "kmain"})], &mut r)?;
    let Some(qemu_kmain) = marks(&probe, "at").next().and_then(|m| num::<u64>(m, 1)) else {
        r.errors.push("could not reach kmain under QEMU's replay".into());
        return Ok(r);
    };
    r.kmain_icount = Some(qemu_kmain);
    for &p in &plan.positions {
        let q = to_qemu(p, ttvm_kmain, qemu_kmain);
        let tag = p.to_string();
        let (mut pos, mut rsi) = (None, Vec::new());
        let mut each_one_step = true;
        for _ in 0..QEMU_ATTEMPTS {
            let need = plan.rsi_count - rsi.len().min(plan.rsi_count);
            if need == 0 {
                break;
            }
            let ops = [json!({"op": "pos", "tag": tag, "icount": q}), json!({"op": "rsi", "tag": tag, "count": need})];
            let out = session(&ops, &mut r)?;
            let (p2, more) = position_marks(&out, &tag);
            each_one_step &= one_step_each(p2.map_or(-1, |p| p.1), &more);
            pos = pos.or(p2);
            // Samples of a later session start again from the position: keep the first
            // session's "first" and append the rest as repeated ones.
            rsi.extend(more);
            if !out.hung {
                break;
            }
        }
        let mut s = summarise(p, q, pos, &rsi);
        // Later sessions start again from the position: judge each session on its own.
        s.each_one_step = !rsi.is_empty() && each_one_step;
        r.positions.push(s);
    }
    if let Some((from, addr, _)) = plan.rc {
        let q = to_qemu(from, ttvm_kmain, qemu_kmain);
        for _ in 0..QEMU_ATTEMPTS {
            let ops = [json!({"op": "pos", "tag": "rc", "icount": q}), json!({"op": "rc", "tag": "rc", "addr": addr})];
            let out = session(&ops, &mut r)?;
            let found =
                marks(&out, "rc").next().map(|m| (num::<i64>(m, 2).unwrap_or(-1), num(m, 1).unwrap_or(f64::NAN)));
            if let Some((stopped_at, ms)) = found {
                r.reverse_continue = Some(ReverseContinue {
                    from: q,
                    addr,
                    stopped_at,
                    span: q as i64 - stopped_at,
                    expected_at: None,
                    ms,
                });
                break;
            }
        }
    }
    Ok(r)
}
