//! The terminal UI on the long trace: frame render time and keypress-to-screen latency
//! (`ttvm_tui::bench` takes the samples, drawn into a TestBackend of a typical terminal
//! size; the statistics are [`crate::stats`]'s, as for every other measurement).

use std::path::Path;

use serde::Serialize;

use crate::stats::{max, median};

use ttvm::exit_code::{self, Exit};

/// Terminal size measured: a common full-screen terminal.
const SIZE: (u16, u16) = (160, 48);

/// One timed interaction.
#[derive(Clone, Debug, Serialize)]
pub struct TuiStat {
    /// What was timed.
    pub what: String,
    /// Samples.
    pub n: usize,
    /// Fastest, ms.
    pub min_ms: f64,
    /// Median, ms.
    pub median_ms: f64,
    /// Slowest, ms.
    pub max_ms: f64,
}

/// The UI's numbers on one trace.
#[derive(Clone, Debug, Serialize)]
pub struct TuiResult {
    /// Trace length in steps.
    pub trace_steps: u64,
    /// Terminal columns and rows.
    pub size: (u16, u16),
    /// One entry per interaction.
    pub stats: Vec<TuiStat>,
}

/// Opens `trace` in the UI's session and times `reps` of each interaction.
pub fn measure(trace: &Path, reps: usize) -> Result<TuiResult, Exit> {
    let r = ttvm_tui::bench::measure(trace, SIZE, reps)
        .map_err(|e| Exit::new(exit_code::HOST_ERROR, format!("tui measurement on {}: {e}", trace.display())))?;
    let stats = r
        .samples
        .iter()
        .map(|s| {
            let ms: Vec<f64> = s.times.iter().map(|d| d.as_secs_f64() * 1e3).collect();
            let mut sorted = ms.clone();
            sorted.sort_by(f64::total_cmp);
            TuiStat {
                what: s.what.clone(),
                n: ms.len(),
                min_ms: sorted.first().copied().unwrap_or_default(),
                median_ms: median(&ms),
                max_ms: max(&ms),
            }
        })
        .collect();
    Ok(TuiResult { trace_steps: r.length, size: r.size, stats })
}
