//! Checkpoint costs: taking them (time and trace bytes against pages dirtied, from
//! `RecordSession::checkpoint_stats`) and restoring them (time against pages rewritten, from
//! `ReplaySession::restore_checkpoint` and `last_restore_pages`), the latter on the same
//! workload recorded with two RAM sizes to show restore cost follows changed pages, not RAM.

use std::path::Path;
use std::time::Instant;

use serde::Serialize;
use ttvm_replay::replay::{ReplaySession, ReplayStep};

use crate::stats::{median, robust_fit, Rng, RobustFit};
use crate::ttvm_runs::CheckpointSample;
use ttvm::commands::replay::open_recording;
use ttvm::exit_code::Exit;

const MIB_PAGES: f64 = 256.0;
/// A "large" checkpoint (a quarter MiB dirtied), where the fixed cost matters less.
pub const LARGE_PAGES: u32 = 64;

fn ms_per_mib(cs: &[&CheckpointSample]) -> f64 {
    let mib: f64 = cs.iter().map(|c| f64::from(c.dirty_pages) / MIB_PAGES).sum();
    let ms: f64 = cs.iter().map(|c| c.ms).sum();
    if mib > 0.0 {
        ms / mib
    } else {
        0.0
    }
}

/// Taking checkpoints, over every recording of the run.
#[derive(Clone, Debug, Default, Serialize)]
pub struct TakeSummary {
    /// Checkpoints after the boot image.
    pub n: usize,
    /// Total time / total MiB dirtied.
    pub ms_per_mib: f64,
    /// Median time per checkpoint.
    pub median_ms: f64,
    /// Median pages dirtied per checkpoint.
    pub median_dirty_pages: f64,
    /// time (ms) = intercept + slope · MiB dirtied (Theil–Sen).
    pub fit_ms_vs_mib: RobustFit,
    /// Trace bytes per page dirtied (after dedup and compression).
    pub bytes_per_dirty_page: f64,
    /// Checkpoints of at least [`LARGE_PAGES`] pages dirtied.
    pub large_n: usize,
    /// Their total time / total MiB dirtied.
    pub large_ms_per_mib: f64,
    /// Boot-image checkpoints: median pages and time.
    pub boot_median_pages: f64,
    /// Median time of a boot checkpoint.
    pub boot_median_ms: f64,
}

/// Summarises checkpoint samples (each recording's list starts with its boot checkpoint).
pub fn take_summary(recordings: &[&[CheckpointSample]]) -> TakeSummary {
    let later: Vec<&CheckpointSample> = recordings.iter().flat_map(|r| r.iter().skip(1)).collect();
    let boots: Vec<&CheckpointSample> = recordings.iter().filter_map(|r| r.first()).collect();
    let large: Vec<&CheckpointSample> = later.iter().copied().filter(|c| c.dirty_pages >= LARGE_PAGES).collect();
    let pages: f64 = later.iter().map(|c| f64::from(c.dirty_pages)).sum();
    let bytes: f64 = later.iter().map(|c| c.bytes as f64).sum();
    TakeSummary {
        n: later.len(),
        ms_per_mib: ms_per_mib(&later),
        large_n: large.len(),
        large_ms_per_mib: ms_per_mib(&large),
        median_ms: median(&later.iter().map(|c| c.ms).collect::<Vec<_>>()),
        median_dirty_pages: median(&later.iter().map(|c| f64::from(c.dirty_pages)).collect::<Vec<_>>()),
        fit_ms_vs_mib: robust_fit(
            &later.iter().map(|c| (f64::from(c.dirty_pages) / MIB_PAGES, c.ms)).collect::<Vec<_>>(),
        ),
        bytes_per_dirty_page: if pages > 0.0 { bytes / pages } else { 0.0 },
        boot_median_pages: median(&boots.iter().map(|c| f64::from(c.dirty_pages)).collect::<Vec<_>>()),
        boot_median_ms: median(&boots.iter().map(|c| c.ms).collect::<Vec<_>>()),
    }
}

/// Restoring checkpoints of one trace.
#[derive(Clone, Debug, Serialize)]
pub struct RestoreSeries {
    /// Guest RAM in MiB.
    pub ram_mib: u64,
    /// Checkpoints in the trace.
    pub checkpoints: usize,
    /// Building a replay session (new VM + full RAM rebuild): scales with RAM.
    pub session_build_ms: f64,
    /// Restores measured.
    pub n: usize,
    /// Median restore time.
    pub median_us: f64,
    /// Median pages rewritten.
    pub median_pages: f64,
    /// time (µs) = intercept + slope · pages rewritten (Theil–Sen).
    pub fit_us_vs_pages: RobustFit,
    /// (pages rewritten, µs) of every restore.
    pub samples: Vec<(usize, f64)>,
}

/// Restores random checkpoints of the trace at `path`, `n` times, replaying a random
/// number of steps (up to `max_steps`) in between so the guest dirties pages too.
pub fn restore_series(path: &Path, n: usize, max_steps: u64) -> Result<RestoreSeries, Exit> {
    let rec = open_recording(path)?;
    let t = Instant::now();
    let mut s = ReplaySession::new(rec.clone(), &ttvm_replay::stepping::host_signature())
        .map_err(|e| Exit::of(path.display(), &e))?;
    let session_build_ms = t.elapsed().as_secs_f64() * 1e3;
    let count = rec.checkpoints.len();
    // Warm-up: decompress every page chunk once (the trace's chunk cache), so the series
    // measures rewriting RAM rather than first-touch decompression.
    for k in 0..count {
        s.restore_checkpoint(k).map_err(|e| Exit::of(path.display(), &e))?;
    }
    let mut rng = Rng::new(0x0072_6573_746f_7265);
    let mut samples = Vec::with_capacity(n);
    for _ in 0..n {
        for _ in 0..rng.below(max_steps + 1) {
            match s.step().map_err(|e| Exit::of(path.display(), &e))? {
                ReplayStep::Stepped => {}
                ReplayStep::Stopped(_) | ReplayStep::AtEnd => break,
            }
        }
        let k = rng.below(count as u64) as usize;
        let t = Instant::now();
        s.restore_checkpoint(k).map_err(|e| Exit::of(path.display(), &e))?;
        samples.push((s.last_restore_pages, t.elapsed().as_secs_f64() * 1e6));
    }
    let us: Vec<f64> = samples.iter().map(|x| x.1).collect();
    let pages: Vec<f64> = samples.iter().map(|x| x.0 as f64).collect();
    Ok(RestoreSeries {
        ram_mib: rec.header().machine.mem_size >> 20,
        checkpoints: count,
        session_build_ms,
        n: samples.len(),
        median_us: median(&us),
        median_pages: median(&pages),
        fit_us_vs_pages: robust_fit(&samples.iter().map(|&(p, t)| (p as f64, t)).collect::<Vec<_>>()),
        samples,
    })
}
