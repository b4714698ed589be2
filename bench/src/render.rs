//! Rendering a [`BenchReport`]: aligned text tables for the terminal and the same tables
//! in Markdown for docs/PERFORMANCE.md.

use std::fmt::Write;

use crate::gdb_latency::GdbLatency;
use crate::report::BenchReport;

/// A table: a header row and data rows.
struct Table {
    head: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    fn new(head: &[&str]) -> Self {
        Self { head: head.iter().map(|s| s.to_string()).collect(), rows: Vec::new() }
    }

    fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    fn text(&self) -> String {
        let n = self.head.len();
        let mut w = vec![0usize; n];
        for r in std::iter::once(&self.head).chain(&self.rows) {
            for (i, c) in r.iter().enumerate().take(n) {
                w[i] = w[i].max(c.chars().count());
            }
        }
        let mut s = String::new();
        for r in std::iter::once(&self.head).chain(&self.rows) {
            let cells: Vec<String> = r.iter().enumerate().map(|(i, c)| format!("{c:<width$}", width = w[i])).collect();
            let _ = writeln!(s, "  {}", cells.join("  ").trim_end());
        }
        s
    }

    fn markdown(&self) -> String {
        let mut s = format!("| {} |\n", self.head.join(" | "));
        let _ = writeln!(s, "|{}", " --- |".repeat(self.head.len()));
        for r in &self.rows {
            let _ = writeln!(s, "| {} |", r.join(" | "));
        }
        s
    }
}

fn f(x: f64, digits: usize) -> String {
    if x.is_finite() {
        format!("{x:.digits$}")
    } else {
        "–".into()
    }
}

fn opt(x: Option<f64>, digits: usize) -> String {
    x.map_or("–".into(), |v| f(v, digits))
}

fn kb(x: f64) -> String {
    if x >= 1e6 {
        format!("{:.2} MB", x / 1e6)
    } else if x >= 1e4 {
        format!("{:.0} kB", x / 1e3)
    } else {
        format!("{x:.0} B")
    }
}

fn main_table(r: &BenchReport) -> Table {
    let mut t = Table::new(&[
        "workload",
        "steps",
        "ceiling µs/step",
        "record µs/step",
        "replay µs/step",
        "record/ceiling",
        "replay/record",
        "ttvm run s (vs ceiling)",
        "QEMU plain s",
        "QEMU record s",
        "QEMU replay s",
        "ttvm/QEMU record",
        "ttvm/QEMU replay",
        "trace per M steps",
    ]);
    for w in &r.workloads {
        let (m, q) = (&w.medians, &w.ratios);
        t.row(vec![
            format!("{} ({} {})", w.name, w.kernel, w.cmdline).trim_end().to_string(),
            w.steps.to_string(),
            f(m.ceiling_us_per_step, 2),
            f(m.record_us_per_step, 2),
            f(m.replay_us_per_step, 2),
            format!("{:.0} %", q.record_vs_ceiling * 100.0),
            format!("{:.2}×", q.replay_vs_record),
            format!("{} ({:.1}× faster)", f(m.free_run_total_secs, 3), q.free_run_speedup_vs_ceiling),
            opt(m.qemu_plain_secs, 3),
            opt(m.qemu_record_secs, 3),
            opt(m.qemu_replay_secs, 3),
            q.ttvm_record_vs_qemu_record.map_or("–".into(), |x| format!("{x:.1}×")),
            q.ttvm_replay_vs_qemu_replay.map_or("–".into(), |x| format!("{x:.1}×")),
            format!("{} ({} after boot)", kb(w.trace_bytes_per_mstep), kb(w.history_bytes_per_mstep)),
        ]);
    }
    t
}

fn size_table(r: &BenchReport) -> Table {
    let mut t = Table::new(&[
        "workload",
        "steps",
        "events",
        "trace",
        "header (kernel image)",
        "boot checkpoint",
        "after boot",
        "after boot per M steps",
        "QEMU rr log per M steps",
    ]);
    for w in &r.workloads {
        t.row(vec![
            w.name.clone(),
            w.steps.to_string(),
            w.events.to_string(),
            kb(w.trace.total_bytes as f64),
            kb(w.trace.header_bytes as f64),
            kb(w.trace.boot_bytes as f64),
            kb(w.trace.history_bytes as f64),
            kb(w.history_bytes_per_mstep),
            w.qemu_log_bytes_per_mstep.map_or("–".into(), kb),
        ]);
    }
    t
}

fn checkpoint_table(r: &BenchReport) -> Table {
    let mut t = Table::new(&[
        "workload",
        "checkpoints",
        "median dirty pages",
        "median ms",
        "ms per MiB",
        "bytes per dirty page",
    ]);
    let mut add = |name: &str, c: &super::checkpoints::TakeSummary| {
        t.row(vec![
            name.to_string(),
            c.n.to_string(),
            f(c.median_dirty_pages, 0),
            f(c.median_ms, 2),
            f(c.ms_per_mib, 2),
            f(c.bytes_per_dirty_page, 0),
        ])
    };
    for w in &r.workloads {
        add(&w.name, &w.checkpoints);
    }
    add("all recordings", &r.checkpoints);
    t
}

fn restore_table(r: &BenchReport) -> Option<Table> {
    let rs = r.restore.as_ref()?;
    let mut t = Table::new(&[
        "RAM",
        "session build ms",
        "restores",
        "median µs",
        "median pages rewritten",
        "fixed µs",
        "µs per page",
        "Spearman",
    ]);
    for s in &rs.series {
        t.row(vec![
            format!("{} MiB", s.ram_mib),
            f(s.session_build_ms, 1),
            s.n.to_string(),
            f(s.median_us, 0),
            f(s.median_pages, 0),
            f(s.fit_us_vs_pages.intercept, 0),
            f(s.fit_us_vs_pages.slope, 2),
            f(s.fit_us_vs_pages.spearman, 2),
        ]);
    }
    Some(t)
}

fn timeline_table(r: &BenchReport) -> Option<Table> {
    let tl = &r.reverse.as_ref()?.timeline;
    let mut t = Table::new(&[
        "icount",
        "seek ms",
        "after seek: first ms",
        "median ms",
        "p99 ms",
        "cold: first ms",
        "median ms",
        "p99 ms",
        "n",
    ]);
    for p in &tl.positions {
        t.row(vec![
            p.icount.to_string(),
            f(p.seek_ms, 1),
            f(p.warm.samples_ms.first().copied().unwrap_or(f64::NAN), 1),
            f(p.warm.median_ms, 1),
            f(p.warm.p99_ms, 1),
            f(p.cold.samples_ms.first().copied().unwrap_or(f64::NAN), 1),
            f(p.cold.median_ms, 1),
            f(p.cold.p99_ms, 1),
            p.cold.n.to_string(),
        ]);
    }
    Some(t)
}

fn rc_table(r: &BenchReport) -> Option<Table> {
    let tl = &r.reverse.as_ref()?.timeline;
    let mut t =
        Table::new(&["from icount", "steps back", "backward s", "forward replay s", "backward/forward", "stop"]);
    for c in &tl.reverse_continue {
        t.row(vec![
            c.from.to_string(),
            c.span.to_string(),
            f(c.backward_secs, 2),
            f(c.forward_secs, 2),
            format!("{:.2}×", c.ratio),
            if c.correct { "breakpoint, expected icount".into() } else { format!("WRONG: at {}", c.stopped_at) },
        ]);
    }
    Some(t)
}

fn watch_rc_table(r: &BenchReport) -> Option<Table> {
    let tl = &r.reverse.as_ref()?.timeline;
    if tl.watch_reverse_continue.is_empty() {
        return None;
    }
    let mut t = Table::new(&[
        "from icount",
        "steps back",
        "intervals passed over",
        "backward s",
        "forward replay s",
        "backward/forward",
        "stop",
    ]);
    for c in &tl.watch_reverse_continue {
        t.row(vec![
            c.from.to_string(),
            c.span.to_string(),
            c.intervals_passed_over.to_string(),
            f(c.backward_secs, 2),
            f(c.forward_secs, 2),
            format!("{:.2}×", c.ratio),
            if c.correct {
                "watchpoint, in the expected interval".into()
            } else {
                format!("WRONG: at {}", c.stopped_at)
            },
        ]);
    }
    Some(t)
}

fn gdb_table(r: &BenchReport) -> Option<Table> {
    let rev = r.reverse.as_ref()?;
    let mut t = Table::new(&[
        "stub",
        "steps into trace",
        "position ms",
        "first rsi ms",
        "repeated median ms",
        "p99 ms",
        "n",
        "one step each",
    ]);
    let mut add = |g: &GdbLatency| {
        for p in &g.positions {
            t.row(vec![
                g.stub.clone(),
                p.steps_into_trace.to_string(),
                f(p.position_ms, 1),
                opt(p.first_ms, 1),
                f(p.repeated.median_ms, 1),
                f(p.repeated.p99_ms, 1),
                (p.repeated.n + usize::from(p.first_ms.is_some())).to_string(),
                if p.each_one_step { "yes" } else { "no" }.into(),
            ]);
        }
    };
    rev.gdb_ttvm.iter().for_each(&mut add);
    rev.gdb_qemu.iter().for_each(&mut add);
    (!t.rows.is_empty()).then_some(t)
}

fn gdb_other_lines(r: &BenchReport) -> Vec<String> {
    let Some(rev) = r.reverse.as_ref() else { return Vec::new() };
    let mut v = Vec::new();
    for g in rev.gdb_ttvm.iter().chain(&rev.gdb_qemu) {
        match &g.reverse_continue {
            Some(c) => v.push(format!(
                "{}: reverse-continue from icount {} to a breakpoint {} steps back: {:.0} ms{}",
                g.stub,
                c.from,
                c.span,
                c.ms,
                match c.expected_at {
                    Some(e) if e as i64 != c.stopped_at => format!(" (stopped at {}, expected {e})", c.stopped_at),
                    _ => String::new(),
                }
            )),
            None if g.stub == "qemu" => v.push("qemu: reverse-continue never completed (see hangs)".into()),
            None => {}
        }
        if let Some(gt) = &g.goto {
            v.push(format!(
                "{}: monitor goto to {} random icounts: median {:.0} ms, p99 {:.0} ms",
                g.stub, gt.n, gt.median_ms, gt.p99_ms
            ));
        }
        v.push(format!(
            "{}: {} gdb session(s), {} hung{}",
            g.stub,
            g.sessions,
            g.hangs,
            if g.errors.is_empty() { String::new() } else { format!("; errors: {}", g.errors.join("; ")) }
        ));
    }
    let tl = &rev.timeline;
    v.push(format!(
        "Timeline: seek to {} random icounts: median {:.0} ms, p99 {:.0} ms, {:.0} steps replayed per seek on average",
        tl.goto.n, tl.goto.median_ms, tl.goto.p99_ms, tl.goto_mean_replayed_steps
    ));
    if let Some(s) = rev.qemu_record_secs {
        v.push(format!("QEMU rr=record of the long trace with rrsnapshot: {s:.2} s"));
    }
    v
}

fn tui_table(r: &BenchReport) -> Option<Table> {
    let tui = r.tui.as_ref()?;
    let mut t = Table::new(&["interaction", "n", "min ms", "median ms", "max ms"]);
    for st in &tui.stats {
        t.row(vec![st.what.clone(), st.n.to_string(), f(st.min_ms, 2), f(st.median_ms, 2), f(st.max_ms, 2)]);
    }
    Some(t)
}

fn tui_heading(r: &BenchReport) -> Option<String> {
    let tui = r.tui.as_ref()?;
    Some(format!(
        "terminal UI on the same trace ({} steps), {}x{} terminal, keypress to drawn frame",
        tui.trace_steps, tui.size.0, tui.size.1
    ))
}

fn verdict(met: Option<bool>) -> &'static str {
    match met {
        Some(true) => "met",
        Some(false) => "NOT met",
        None => "not measured",
    }
}

/// The terminal report.
pub fn text(r: &BenchReport) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "\nttvm bench — {} run(s) per figure, medians; ratios are taken within each run, then the median",
        r.runs
    );
    let _ = writeln!(
        s,
        "host: {} CPUs, {}, Linux {}, {}; load average {} → {}",
        r.host.nproc, r.host.cpu_model, r.host.kernel, r.host.kvm_flavour, r.host.loadavg_start, r.host.loadavg_end
    );
    s.push_str(&main_table(r).text());
    let _ = writeln!(s, "\ntrace sizes (kB = 1000 bytes):");
    s.push_str(&size_table(r).text());
    let _ = writeln!(s, "\ncheckpoints taken while recording:");
    s.push_str(&checkpoint_table(r).text());
    if let Some(t) = restore_table(r) {
        let _ =
            writeln!(s, "\ncheckpoint restore (ReplaySession::restore_checkpoint), same workload at two RAM sizes:");
        s.push_str(&t.text());
    }
    if let Some(t) = timeline_table(r) {
        let _ = writeln!(s, "\nreverse-stepi through the Timeline API:");
        s.push_str(&t.text());
    }
    if let Some(t) = rc_table(r) {
        let _ = writeln!(s, "\nreverse-continue through the Timeline API:");
        s.push_str(&t.text());
    }
    if let Some(t) = watch_rc_table(r) {
        let _ = writeln!(s, "\nreverse-continue with a write watchpoint (8 bytes) through the Timeline API:");
        s.push_str(&t.text());
    }
    if let Some(t) = gdb_table(r) {
        let _ = writeln!(s, "\nreverse-stepi through gdb:");
        s.push_str(&t.text());
    }
    for l in gdb_other_lines(r) {
        let _ = writeln!(s, "  {l}");
    }
    for skip in [&r.qemu_skipped, &r.gdb_skipped].into_iter().flatten() {
        let _ = writeln!(s, "  skipped: {skip}");
    }
    if let (Some(h), Some(t)) = (tui_heading(r), tui_table(r)) {
        let _ = writeln!(s, "\n{h}:");
        s.push_str(&t.text());
    }
    let _ = writeln!(s, "\nissue 8 targets:");
    for t in &r.targets {
        let _ = writeln!(s, "  [{}] {}: {}", verdict(t.met), t.goal, t.measured);
    }
    s
}

/// The generated Markdown section of docs/PERFORMANCE.md.
pub fn markdown(r: &BenchReport) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "Generated by `{}` on {} ({:.0} min).\n", r.command, r.date, r.duration_secs / 60.0);
    let _ = writeln!(
        s,
        "Machine: {} CPUs, {}, Linux {}, KVM module {}; load average {} at the start, {} at the end. \
         QEMU: {}. gdb: {}.\n",
        r.host.nproc,
        r.host.cpu_model,
        r.host.kernel,
        r.host.kvm_flavour,
        r.host.loadavg_start,
        r.host.loadavg_end,
        r.qemu
            .as_ref()
            .map_or_else(|| format!("skipped ({})", r.qemu_skipped.as_deref().unwrap_or("?")), |q| q.version.clone()),
        r.gdb.clone().unwrap_or_else(|| format!("skipped ({})", r.gdb_skipped.as_deref().unwrap_or("?")))
    );
    let _ = writeln!(s, "### Targets (issue 8)\n");
    for t in &r.targets {
        let _ = writeln!(s, "- **{}** — {}: {}", verdict(t.met), t.goal, t.measured);
    }
    let _ = writeln!(s, "\n### Engines, medians of {} runs\n", r.runs);
    s.push_str(&main_table(r).markdown());
    let _ = writeln!(s, "\n### Trace sizes (kB = 1000 bytes)\n");
    s.push_str(&size_table(r).markdown());
    let _ = writeln!(s, "\n### Checkpoints taken while recording\n");
    s.push_str(&checkpoint_table(r).markdown());
    if let Some(t) = restore_table(r) {
        let _ = writeln!(s, "\n### Checkpoint restore against RAM size\n");
        s.push_str(&t.markdown());
    }
    if let Some(rev) = &r.reverse {
        let _ = writeln!(
            s,
            "\n### Reverse debugging on `{} {}` ({} steps, a checkpoint every {} steps)\n",
            rev.kernel, rev.cmdline, rev.timeline.trace_steps, rev.timeline.checkpoint_every
        );
    }
    if let Some(t) = timeline_table(r) {
        let _ = writeln!(s, "reverse-stepi through the Timeline API:\n");
        s.push_str(&t.markdown());
    }
    if let Some(t) = rc_table(r) {
        let _ = writeln!(s, "\nreverse-continue through the Timeline API:\n");
        s.push_str(&t.markdown());
    }
    if let Some(t) = watch_rc_table(r) {
        let _ = writeln!(s, "\nreverse-continue with a write watchpoint (8 bytes) through the Timeline API:\n");
        s.push_str(&t.markdown());
    }
    if let Some(t) = gdb_table(r) {
        let _ = writeln!(s, "\nreverse-stepi through gdb:\n");
        s.push_str(&t.markdown());
    }
    let other = gdb_other_lines(r);
    if !other.is_empty() {
        s.push('\n');
        for l in other {
            let _ = writeln!(s, "- {l}");
        }
    }
    if let (Some(h), Some(t)) = (tui_heading(r), tui_table(r)) {
        let _ = writeln!(s, "\n### The {h}\n");
        s.push_str(&t.markdown());
    }
    s
}
