//! Where a free-running guest spends its time (`ttvm run --profile FILE`): the guest RIP is
//! sampled every [`SAMPLE_INTERVAL`] of host time (the run loop arms its timer signal for
//! the next sample, so the vCPU leaves KVM_RUN where it is), then grouped by function. On hosts that
//! emulate ring-0 code a slow boot phase is usually one function looping; this names it.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::symbols::SymbolTable;

/// Host time between samples.
pub const SAMPLE_INTERVAL: Duration = Duration::from_millis(10);

/// Host time per line of the report's time table, and between rewrites of the report file.
pub const WINDOW: Duration = Duration::from_secs(60);

/// How many functions each table lists.
const TOP: usize = 25;
/// How many functions each time window lists.
const TOP_PER_WINDOW: usize = 4;

/// Guest RIP samples in host-time order.
#[derive(Debug, Default, Clone)]
pub struct RipProfile {
    /// (host milliseconds since the run started, RIP).
    samples: Vec<(u64, u64)>,
    next_due: Duration,
}

impl RipProfile {
    /// An empty profile.
    pub fn new() -> Self {
        Self::default()
    }

    /// Takes a sample if one is due at host time `elapsed` since the run started.
    pub fn offer(&mut self, elapsed: Duration, rip: u64) {
        if elapsed >= self.next_due {
            self.samples.push((elapsed.as_millis() as u64, rip));
            self.next_due = elapsed + SAMPLE_INTERVAL;
        }
    }

    /// Host time from `elapsed` until the next sample is due (zero when it is overdue).
    pub fn next_sample_in(&self, elapsed: Duration) -> Duration {
        self.next_due.saturating_sub(elapsed)
    }

    /// Number of samples taken.
    pub fn len(&self) -> usize {
        self.samples.len()
    }

    /// Whether no sample was taken.
    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }

    /// The report: the hottest functions overall, then per `window` of host time. Without
    /// symbols (or outside them) addresses are grouped by 256-byte block.
    pub fn render(&self, symbols: Option<&SymbolTable>, window: Duration) -> String {
        let name = |rip: u64| match symbols.and_then(|s| s.lookup(rip)) {
            Some((name, _)) => name.to_string(),
            None => format!("{:#x}", rip & !0xff),
        };
        let mut out = String::new();
        let total = self.samples.len();
        let _ = writeln!(
            out,
            "# ttvm run profile: {total} samples of the guest RIP, one per {} ms of host time \
             (time the guest spends halted is not sampled)",
            SAMPLE_INTERVAL.as_millis()
        );
        let _ = writeln!(out, "\n## Hottest functions\n\n samples   share  function");
        for (function, n) in hottest(self.samples.iter().map(|&(_, rip)| name(rip)), TOP) {
            let _ = writeln!(out, "{n:8}  {:5.1}%  {function}", percent(n, total));
        }
        let window_ms = window.as_millis().max(1) as u64;
        let _ = writeln!(out, "\n## Over time (host seconds: samples, hottest functions)\n");
        let mut start = 0;
        while start < total {
            let bucket = self.samples[start].0 / window_ms;
            let end = start + self.samples[start..].iter().take_while(|&&(t, _)| t / window_ms == bucket).count();
            let in_window = end - start;
            let top = hottest(self.samples[start..end].iter().map(|&(_, rip)| name(rip)), TOP_PER_WINDOW);
            let list: Vec<String> = top.iter().map(|(f, n)| format!("{f} {:.0}%", percent(*n, in_window))).collect();
            let from = bucket * window_ms / 1000;
            let to = (bucket + 1) * window_ms / 1000;
            let _ = writeln!(out, "{from:6}-{to:<6} {in_window:6}  {}", list.join(", "));
            start = end;
        }
        out
    }
}

/// A profile that keeps its report file current: rewritten every [`WINDOW`] of host time and
/// when the run ends, so a long boot can be looked at while it runs, and a run killed
/// outright still leaves its last report.
#[derive(Debug)]
pub struct ProfileWriter<'a> {
    profile: RipProfile,
    path: PathBuf,
    symbols: Option<&'a SymbolTable>,
    next_write: Duration,
    error: Option<std::io::Error>,
}

impl<'a> ProfileWriter<'a> {
    /// Creates (truncates) the report file now, so a bad path fails before the run.
    pub fn create(path: &Path, symbols: Option<&'a SymbolTable>) -> std::io::Result<Self> {
        std::fs::File::create(path)?;
        Ok(Self { profile: RipProfile::new(), path: path.to_path_buf(), symbols, next_write: WINDOW, error: None })
    }

    /// Offers a sample (see [`RipProfile::offer`]); rewrites the report when one is due.
    pub fn offer(&mut self, elapsed: Duration, rip: u64) {
        self.profile.offer(elapsed, rip);
        if elapsed >= self.next_write {
            self.next_write = elapsed + WINDOW;
            self.write();
        }
    }

    /// Host time from `elapsed` until the next sample is due: the run loop kicks the vCPU
    /// then, so the sample shows where the guest is rather than where it next exits.
    pub fn next_sample_in(&self, elapsed: Duration) -> Duration {
        self.profile.next_sample_in(elapsed)
    }

    /// Writes the final report; returns the number of samples, or the first write error.
    pub fn finish(mut self) -> std::io::Result<usize> {
        self.write();
        match self.error.take() {
            Some(e) => Err(e),
            None => Ok(self.profile.len()),
        }
    }

    /// Replaces the report through a temporary file, so readers never see half of one.
    fn write(&mut self) {
        let report = self.profile.render(self.symbols, WINDOW);
        let tmp = self.path.with_extension("partial");
        let result = std::fs::write(&tmp, report).and_then(|()| std::fs::rename(&tmp, &self.path));
        if let Err(e) = result {
            self.error.get_or_insert(e);
        }
    }
}

fn percent(n: usize, total: usize) -> f64 {
    100.0 * n as f64 / total.max(1) as f64
}

/// The `n` most frequent names, most frequent first (ties by name, so reports are stable).
fn hottest(names: impl Iterator<Item = String>, n: usize) -> Vec<(String, usize)> {
    let mut counts: HashMap<String, usize> = HashMap::new();
    for name in names {
        *counts.entry(name).or_default() += 1;
    }
    let mut v: Vec<_> = counts.into_iter().collect();
    v.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    v.truncate(n);
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::symbols::Symbol;

    #[test]
    fn samples_once_per_interval() {
        let mut p = RipProfile::new();
        for ms in 0..100u64 {
            p.offer(Duration::from_millis(ms), 0x1000);
        }
        assert_eq!(p.len(), 10);
        assert_eq!(p.next_sample_in(Duration::from_millis(95)), Duration::from_millis(5));
        assert_eq!(p.next_sample_in(Duration::from_millis(200)), Duration::ZERO);
    }

    #[test]
    fn groups_by_function_overall_and_per_window() {
        let symbols = SymbolTable::from_symbols(vec![
            Symbol { addr: 0x1000, size: 0x100, kind: 'T', name: "spin".into() },
            Symbol { addr: 0x2000, size: 0x100, kind: 'T', name: "work".into() },
        ]);
        let mut p = RipProfile::new();
        // First second: mostly `spin`; second second: only `work`.
        for i in 0..100u64 {
            let rip = if i % 4 == 0 { 0x2010 } else { 0x1010 + i % 8 };
            p.offer(Duration::from_millis(i * 10), rip);
        }
        for i in 100..150u64 {
            p.offer(Duration::from_millis(i * 10), 0x2020);
        }
        let text = p.render(Some(&symbols), Duration::from_secs(1));
        assert!(text.contains("150 samples"), "{text}");
        assert!(text.contains("      75   50.0%  spin"), "{text}");
        assert!(text.contains("      75   50.0%  work"), "{text}");
        assert!(text.contains("     0-1         100  spin 75%, work 25%"), "{text}");
        assert!(text.contains("     1-2          50  work 100%"), "{text}");
        let raw = p.render(None, Duration::from_secs(60));
        assert!(raw.contains("0x1000"), "{raw}");
    }

    #[test]
    fn writer_keeps_the_report_current() {
        let dir = std::env::temp_dir().join(format!("ttvm-profile-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("p.txt");
        let mut w = ProfileWriter::create(&path, None).unwrap();
        w.offer(Duration::ZERO, 0x1000);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "", "nothing due yet");
        w.offer(WINDOW, 0x1000);
        assert!(std::fs::read_to_string(&path).unwrap().contains("2 samples"));
        w.offer(WINDOW + Duration::from_secs(1), 0x2000);
        assert_eq!(w.finish().unwrap(), 3);
        assert!(std::fs::read_to_string(&path).unwrap().contains("3 samples"));
        assert!(ProfileWriter::create(&dir.join("no/such/dir/p.txt"), None).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
