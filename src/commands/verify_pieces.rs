//! `ttvm replay --verify --jobs N`: verify a long trace as N pieces at once, one `ttvm`
//! process each (every piece needs its own VM), joined at checkpoints: a piece ends by
//! comparing the state with the checkpoint the next piece starts from, so together they
//! check exactly what one whole-trace verify checks.

use std::io::Read;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use ttvm_replay::recording::Recording;

use crate::exit_code::{self, Exit};

/// One piece of the history: from a checkpoint to the next piece's checkpoint (or the end).
#[derive(Clone, Debug, PartialEq, Eq)]
struct Piece {
    checkpoint: usize,
    from: u64,
    to: u64,
    last: bool,
}

/// Splits the history into at most `jobs` pieces of similar length, cut at checkpoints.
fn pieces(checkpoint_icounts: &[u64], length: u64, jobs: usize) -> Vec<Piece> {
    let mut starts = vec![0usize];
    for i in 1..jobs as u64 {
        let want = length / jobs as u64 * i;
        let after = checkpoint_icounts.partition_point(|&c| c <= want);
        let before = after.saturating_sub(1);
        // The checkpoint nearest the even cut keeps the pieces' lengths close.
        let k = match checkpoint_icounts.get(after) {
            Some(&c) if c - want < want - checkpoint_icounts[before] => after,
            _ => before,
        };
        if k > *starts.last().unwrap_or(&0) && checkpoint_icounts[k] < length {
            starts.push(k);
        }
    }
    starts
        .iter()
        .enumerate()
        .map(|(i, &k)| {
            let next = starts.get(i + 1).map(|&n| checkpoint_icounts[n]);
            Piece { checkpoint: k, from: checkpoint_icounts[k], to: next.unwrap_or(length), last: next.is_none() }
        })
        .collect()
}

struct Running {
    /// 1-based, as the report numbers pieces.
    number: usize,
    piece: Piece,
    child: Child,
    stderr: Option<JoinHandle<String>>,
}

fn spawn(exe: &Path, trace: &Path, number: usize, piece: &Piece) -> Result<Running, Exit> {
    let mut cmd = Command::new(exe);
    cmd.arg("replay").arg(trace).args(["--verify", "-q", "--from-checkpoint", &piece.checkpoint.to_string()]);
    if !piece.last {
        cmd.args(["--to", &piece.to.to_string()]);
    }
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| Exit::new(exit_code::HOST_ERROR, format!("cannot start {}: {e}", exe.display())))?;
    // Drained on a thread so a chatty piece cannot block on a full pipe.
    let stderr = child.stderr.take().map(|mut pipe| {
        std::thread::spawn(move || {
            let mut s = String::new();
            let _ = pipe.read_to_string(&mut s);
            s
        })
    });
    Ok(Running { number, piece: piece.clone(), child, stderr })
}

/// The checkpoint to start from and the icount to stop at (None: the end) for piece `k`
/// (1-based) of `n`, as `--jobs n` would cut it; `None` when the history splits into fewer
/// than `k` pieces (too few checkpoints), so that piece has nothing to verify.
pub fn piece_range(rec: &Recording, k: usize, n: usize) -> Option<(usize, Option<u64>)> {
    let icounts: Vec<u64> = rec.checkpoints.iter().map(|c| c.engine.icount).collect();
    let plan = pieces(&icounts, rec.length(), n.max(1));
    let p = plan.get(k.checked_sub(1)?)?;
    Some((p.checkpoint, (!p.last).then_some(p.to)))
}

/// Parses `K/N` (1 <= K <= N).
pub fn parse_piece(spec: &str) -> Result<(usize, usize), String> {
    let bad = || format!("--piece {spec}: expected K/N with 1 <= K <= N, e.g. 2/4");
    let (k, n) = spec.split_once('/').ok_or_else(bad)?;
    let (k, n) = (k.trim().parse::<usize>().map_err(|_| bad())?, n.trim().parse::<usize>().map_err(|_| bad())?);
    if k == 0 || k > n {
        return Err(bad());
    }
    Ok((k, n))
}

/// Verifies `rec` in `jobs` pieces at once. Returns 0 only if every piece matches; the first
/// piece that fails stops the others and its report (with its exit status) is the result.
pub fn verify_in_pieces(trace: &Path, rec: &Recording, jobs: usize) -> Result<i32, Exit> {
    let icounts: Vec<u64> = rec.checkpoints.iter().map(|c| c.engine.icount).collect();
    let plan = pieces(&icounts, rec.length(), jobs.max(1));
    let exe = std::env::current_exe()
        .map_err(|e| Exit::new(exit_code::HOST_ERROR, format!("cannot find the ttvm executable: {e}")))?;
    eprintln!(
        "ttvm: verifying {} steps in {} pieces at once, joined at checkpoints {}",
        rec.length(),
        plan.len(),
        plan.iter().skip(1).map(|p| p.checkpoint.to_string()).collect::<Vec<_>>().join(", ")
    );
    let started = Instant::now();
    let mut running = Vec::new();
    for (i, p) in plan.iter().enumerate() {
        running.push(spawn(&exe, trace, i + 1, p)?);
    }
    let total = plan.len();
    let mut failure: Option<(Piece, i32, String)> = None;
    while !running.is_empty() && failure.is_none() {
        let mut i = 0;
        while i < running.len() {
            let status = running[i]
                .child
                .try_wait()
                .map_err(|e| Exit::new(exit_code::HOST_ERROR, format!("waiting for a piece: {e}")))?;
            let Some(status) = status else {
                i += 1;
                continue;
            };
            let mut r = running.swap_remove(i);
            let report = r.stderr.take().and_then(|h| h.join().ok()).unwrap_or_default();
            if status.success() {
                eprintln!(
                    "ttvm: piece {}/{total} (icount {} to {}) matches ({:.1} s)",
                    r.number,
                    r.piece.from,
                    r.piece.to,
                    started.elapsed().as_secs_f64()
                );
            } else if failure.is_none() {
                failure = Some((r.piece, status.code().unwrap_or(exit_code::HOST_ERROR), report));
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    for mut r in running {
        let _ = r.child.kill();
        let _ = r.child.wait();
    }
    if let Some((p, code, report)) = failure {
        return Err(Exit::new(
            code,
            format!(
                "piece from checkpoint {} (icount {} to {}) failed:\n{}",
                p.checkpoint,
                p.from,
                p.to,
                report.trim_end().trim_start_matches("ttvm: ")
            ),
        ));
    }
    eprintln!(
        "ttvm: verified {} steps in {total} pieces in {:.2} s: every event, checkpoint, {}",
        rec.length(),
        started.elapsed().as_secs_f64(),
        crate::commands::replay::end_checked(rec)
    );
    Ok(crate::commands::replay::whole_verify_status(rec))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn piece_specs() {
        assert_eq!(parse_piece("2/4"), Ok((2, 4)));
        assert_eq!(parse_piece("1/1"), Ok((1, 1)));
        for bad in ["0/3", "4/3", "3", "a/b", "/", "1/0", "-1/2"] {
            assert!(parse_piece(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn pieces_cut_at_checkpoints_and_cover_the_history() {
        let icounts: Vec<u64> = (0..10).map(|k| k * 1000).collect();
        let p = pieces(&icounts, 9500, 3);
        assert_eq!(p.iter().map(|p| p.checkpoint).collect::<Vec<_>>(), vec![0, 3, 6]);
        assert_eq!(p.iter().map(|p| (p.from, p.to)).collect::<Vec<_>>(), vec![(0, 3000), (3000, 6000), (6000, 9500)]);
        // The even cuts are at 3 333 and 6 666: 3 000 and 7 000 are the nearest checkpoints.
        let p = pieces(&icounts, 10000, 3);
        assert_eq!(p.iter().map(|p| p.checkpoint).collect::<Vec<_>>(), vec![0, 3, 7]);
        assert!(p[2].last && !p[0].last && !p[1].last);
    }

    #[test]
    fn fewer_checkpoints_than_jobs_give_fewer_pieces() {
        let p = pieces(&[0, 5000], 6000, 8);
        assert_eq!(p.iter().map(|p| (p.checkpoint, p.to)).collect::<Vec<_>>(), vec![(0, 5000), (1, 6000)]);
        let p = pieces(&[0], 6000, 4);
        assert_eq!(p, vec![Piece { checkpoint: 0, from: 0, to: 6000, last: true }]);
    }

    #[test]
    fn a_checkpoint_at_the_very_end_starts_no_empty_piece() {
        let p = pieces(&[0, 1000, 2000], 2000, 2);
        assert_eq!(p.iter().map(|p| (p.from, p.to)).collect::<Vec<_>>(), vec![(0, 1000), (1000, 2000)]);
        let p = pieces(&[0, 2000], 2000, 2);
        assert_eq!(p.len(), 1);
    }
}
