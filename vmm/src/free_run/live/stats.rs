//! What a checkpointed run measured: guest pause per checkpoint, pages dirtied, bytes written.

use std::time::Duration;

/// Totals of a checkpointed run, printed when it ends.
#[derive(Clone, Debug, Default)]
pub struct LiveSummary {
    /// Guest pause of each live checkpoint (the base one taken before the guest ran is not
    /// a pause and is left out).
    pub downtimes: Vec<Duration>,
    /// Pages dirtied in each live checkpoint's interval.
    pub dirtied: Vec<u64>,
    /// Checkpoints put off because the writer still had two to write.
    pub postponed: u64,
    /// Bytes written to the directory (packs and checkpoint files), base included.
    pub bytes: u64,
    /// Pages stored.
    pub stored: u64,
    /// Pages found already stored by content.
    pub deduplicated: u64,
    /// Whether a last checkpoint was taken where the run was stopped (Ctrl-C, timeout).
    pub final_taken: bool,
    /// How dirty pages were copied: "copied on write", or in the pause and why.
    pub copy_mode: String,
}

/// The `p`-th percentile (nearest rank) of `sorted`.
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

impl std::fmt::Display for LiveSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut d = self.downtimes.clone();
        d.sort_unstable();
        let ms = |x: Duration| x.as_secs_f64() * 1e3;
        let max_dirty = self.dirtied.iter().max().copied().unwrap_or(0);
        let total_dirty: u64 = self.dirtied.iter().sum();
        write!(
            f,
            "{} live checkpoints: downtime median {:.3} ms, p99 {:.3} ms, max {:.3} ms; {} pages dirtied \
             (at most {} = {:.1} MiB in one interval); {:.2} MiB written ({} pages stored, {} deduplicated)",
            d.len(),
            ms(percentile(&d, 50.0)),
            ms(percentile(&d, 99.0)),
            ms(d.last().copied().unwrap_or_default()),
            total_dirty,
            max_dirty,
            max_dirty as f64 * 4096.0 / (1 << 20) as f64,
            self.bytes as f64 / (1 << 20) as f64,
            self.stored,
            self.deduplicated,
        )?;
        if !self.copy_mode.is_empty() {
            write!(f, "; pages {}", self.copy_mode)?;
        }
        if self.postponed > 0 {
            write!(f, "; {} postponed while the copier or the writer caught up", self.postponed)?;
        }
        if self.final_taken {
            write!(f, "; a final checkpoint where the run was stopped")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let d: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(percentile(&d, 50.0), Duration::from_millis(50));
        assert_eq!(percentile(&d, 99.0), Duration::from_millis(99));
        assert_eq!(percentile(&d[..3], 99.0), Duration::from_millis(3));
        assert_eq!(percentile(&[], 99.0), Duration::ZERO);
    }

    #[test]
    fn the_summary_names_its_numbers() {
        let s = LiveSummary {
            downtimes: vec![Duration::from_micros(500), Duration::from_micros(1500)],
            dirtied: vec![10, 256],
            bytes: 3 << 20,
            stored: 200,
            deduplicated: 66,
            postponed: 0,
            final_taken: false,
            copy_mode: String::new(),
        };
        let text = s.to_string();
        assert!(!text.contains("final"), "{text}");
        assert!(LiveSummary { final_taken: true, ..s.clone() }.to_string().ends_with("where the run was stopped"));
        assert!(text.starts_with("2 live checkpoints: downtime median 0.500 ms, p99 1.500 ms"), "{text}");
        assert!(text.contains("266 pages dirtied (at most 256 = 1.0 MiB in one interval); 3.00 MiB written"), "{text}");
    }
}
