//! Carrying out `monitor` commands against the timeline. Each returns the text gdb prints.

use std::fmt::Write;

use ttvm_replay::timeline::Stop;

use crate::monitor::{version_line, Command, GotoTarget, HELP, MAX_EVENT_LINES};
use crate::target::TtvmTarget;

/// Printed after commands that move the position behind gdb's back.
const REFRESH_HINT: &str =
    "gdb still shows the previous position: run `maintenance flush register-cache` to see this one";
/// Events shown on each side of the current position by a bare `monitor events`.
const EVENTS_AROUND: usize = 10;
/// Most serial output `monitor serial` prints.
const MAX_SERIAL_BYTES: usize = 8192;

impl TtvmTarget<'_> {
    pub(crate) fn run_monitor(&mut self, c: Command) -> String {
        if matches!(c, Command::Goto(_) | Command::LastWrite { .. }) {
            // A move through history from a machine edited for a branch would replay the
            // edit as if it had been recorded.
            if let Err(e) = self.before_move(false) {
                return format!("error: {e}");
            }
        }
        match c {
            Command::Help => HELP.to_string(),
            Command::When => self.when(),
            Command::Goto(t) => self.goto(t),
            Command::Checkpoints => self.checkpoints(),
            Command::Events { from, to } => self.events(from, to),
            Command::Info => self.info(),
            Command::Version => version_line(),
            Command::LastWrite { addr, len } => self.last_write(addr, len),
            Command::Serial => self.serial(),
            Command::DiskHistory { sector } => self.disk_history(sector),
            Command::Frames => self.frames(),
            Command::Branch { .. } if self.peers.is_some() => "error: a VM of a network recording cannot branch \
                 alone (its peers' frames would no longer match); branch its trace outside the network"
                .to_string(),
            Command::Branch { file } => self.monitor_branch(file),
        }
    }

    fn history_note(&self) -> &'static str {
        if self.tl.can_grow() {
            "live: history grows as the guest runs forward"
        } else {
            "recorded history"
        }
    }

    /// "RIP 0x... insn" at the current position.
    fn here(&self) -> String {
        let m = self.tl.machine();
        let (regs, sregs) = (m.vm.vcpu().regs(), m.vm.vcpu().sregs());
        let name = match self.symbols.as_ref().and_then(|s| s.describe(regs.rip)) {
            Some(n) => format!(" <{n}>"),
            None => String::new(),
        };
        format!("RIP {:#x}{name}: {}", regs.rip, ttvm_vmm::disasm::describe_at_rip(m.vm.ram(), &regs, &sregs))
    }

    fn when(&self) -> String {
        let now = self.tl.icount();
        let rec = self.tl.recording();
        let mut s = format!(
            "icount {} of {} steps ({}{})\n",
            self.position(),
            self.history_length(),
            self.history_note(),
            self.family_note()
        );
        // The current trace's icounts in the family's numbering (after a branch).
        let base = self.position() - now;
        if let Some(cp) = rec.checkpoints.get(rec.checkpoint_before(now)) {
            let at = cp.engine.icount;
            let back = now - at.min(now);
            let _ = writeln!(s, "nearest checkpoint: #{} at icount {} ({back} steps back)", cp.index, at + base);
        }
        if let Some(t) = self.tl.temp_checkpoint_positions().into_iter().filter(|&p| p <= now).max() {
            let _ = writeln!(s, "nearest in-memory checkpoint: icount {} ({} steps back)", t + base, now - t);
        }
        s.push_str(&self.here());
        s
    }

    fn goto(&mut self, t: GotoTarget) -> String {
        let (now, len) = (self.position(), self.history_length());
        let target = match t {
            GotoTarget::Absolute(n) => Some(n),
            GotoTarget::Forward(n) => now.checked_add(n),
            GotoTarget::Back(n) => now.checked_sub(n),
        };
        let Some(target) = target.filter(|&n| n <= len) else {
            return format!("error: that is outside the history (icounts 0..={len}); still at icount {now}");
        };
        match self.watched_run(|t| t.seek_family(target)) {
            (Ok(Stop::Interrupted), _) => format!("interrupted at icount {}\n{REFRESH_HINT}", self.position()),
            (Ok(_), _) => {
                let here = format!("now at icount {}, {}\n{REFRESH_HINT}", self.position(), self.here());
                match self.moved_in_network(self.position()) {
                    Some(others) => format!("{here}\n{others}"),
                    None => here,
                }
            }
            (Err(e), _) => self.failed(e),
        }
    }

    fn failed(&mut self, e: ttvm_replay::timeline::TimelineError) -> String {
        let msg = format!("replay failed at icount {}: {e}", self.tl.icount());
        self.last_error = Some(msg.clone());
        format!("error: {msg}")
    }

    fn checkpoints(&self) -> String {
        let rec = self.tl.recording();
        let now = self.tl.icount();
        let mut s = format!("{} checkpoints in the trace:\n", rec.checkpoints.len());
        for c in &rec.checkpoints {
            let mark = if rec.checkpoint_before(now) == c.index as usize { "  <= nearest" } else { "" };
            let _ =
                writeln!(s, "  #{:<4} icount {:>12}  {:>6} dirty pages{mark}", c.index, c.engine.icount, c.blobs.len());
        }
        let (n, bytes) = self.tl.temp_checkpoints();
        let _ = write!(s, "{n} in-memory checkpoints ({:.1} MiB)", bytes as f64 / (1 << 20) as f64);
        let positions = self.tl.temp_checkpoint_positions();
        if !positions.is_empty() {
            let shown: Vec<String> = positions.iter().take(32).map(u64::to_string).collect();
            let more = if positions.len() > 32 { " ..." } else { "" };
            let _ = write!(s, " at icounts {}{more}", shown.join(" "));
        }
        s
    }

    fn events(&self, from: Option<u64>, to: Option<u64>) -> String {
        let rec = self.tl.recording();
        let now = self.tl.icount();
        let events = &rec.events;
        let (start, end) = match (from, to) {
            (None, _) => {
                let at = rec.first_event_at(now);
                (at.saturating_sub(EVENTS_AROUND), (at + EVENTS_AROUND).min(events.len()))
            }
            (Some(f), t) => {
                let end = t.map_or(events.len(), |t| rec.first_event_at(t));
                (rec.first_event_at(f), end)
            }
        };
        let mut s = String::new();
        let mut marked = false;
        for e in events[start..end.max(start)].iter().take(MAX_EVENT_LINES) {
            if !marked && e.icount >= now && from.is_none() {
                let _ = writeln!(s, "=> icount {now} (current position)");
                marked = true;
            }
            let _ = writeln!(s, "{:>12}  {}", e.icount, e.kind.describe());
        }
        let total = end.saturating_sub(start);
        if total > MAX_EVENT_LINES {
            let _ = writeln!(s, "... {} more events (narrow FROM..TO)", total - MAX_EVENT_LINES);
        }
        if total == 0 {
            s.push_str("no events in that range\n");
        }
        s
    }

    fn info(&self) -> String {
        let rec = self.tl.recording();
        let h = rec.header();
        let stats = self.tl.stats();
        let (temps, temp_bytes) = self.tl.temp_checkpoints();
        let end = match &rec.end {
            Some(e) => e.reason.clone(),
            None if self.tl.is_live() => "live recording".into(),
            None => "not finalised".into(),
        };
        let mut s = String::new();
        let _ =
            writeln!(s, "kernel:      {} ({} bytes, xxh3 {})", h.kernel_name, h.machine.kernel.len(), h.kernel_hash);
        let _ = writeln!(s, "cmdline:     {:?}", h.machine.cmdline);
        let _ = writeln!(
            s,
            "machine:     {} MiB RAM, clock {} ({} ns/step)",
            h.machine.mem_size >> 20,
            h.clock,
            h.ns_per_step
        );
        let _ = writeln!(
            s,
            "history:     {} steps ({}{}), end: {end}",
            self.history_length(),
            self.history_note(),
            self.family_note()
        );
        let _ = writeln!(s, "position:    icount {}", self.position());
        let _ = writeln!(s, "events:      {}", rec.events.len());
        let _ = writeln!(
            s,
            "checkpoints: {} in the trace (every {} steps), {temps} in memory ({:.1} MiB)",
            rec.checkpoints.len(),
            h.checkpoint_every,
            temp_bytes as f64 / (1 << 20) as f64
        );
        let _ = writeln!(
            s,
            "stops set:   {} breakpoints, {} watchpoints",
            self.tl.breakpoints().len(),
            self.tl.watchpoints().len()
        );
        let _ = writeln!(
            s,
            "statistics:  {} steps replayed, {} restores, {} in-memory checkpoints made",
            stats.replayed_steps, stats.restores, stats.temp_checkpoints_made
        );
        let _ = writeln!(
            s,
            "skips:       {} checkpoint intervals passed over by runs ({} after a free run)",
            stats.skipped_intervals, stats.free_counted_intervals
        );
        let seeks = self.tl.session().free_seek_stats;
        let _ = writeln!(
            s,
            "seeks:       {} ran natively to a waypoint ({} steps), {} fell back to stepping",
            seeks.arrived, seeks.steps, seeks.fell_back
        );
        let how = match (self.tl.free_runs(), ttvm_replay::stepping::data_breakpoints_fire()) {
            (false, _) => "single-stepping (free runs are off: --step-all)",
            (true, true) => "data breakpoints in free runs",
            (true, false) => "hiding their pages from free runs (this host's data breakpoints do not fire)",
        };
        let watching = format!(
            "read and access watchpoints looked out for by {how}; {} runs touched one",
            self.tl.session().free_stats.touched
        );
        let _ = writeln!(s, "watching:    {watching}");
        if let Some(e) = &self.last_error {
            let _ = writeln!(s, "last error:  {e}");
        }
        s
    }

    fn last_write(&mut self, addr: u64, len: u64) -> String {
        let origin = self.tl.icount();
        let range = format!("[{addr:#x}, {:#x})", addr + len);
        let (r, interrupted) = self.watched_run(|t| t.tl.last_write(addr, len));
        match r {
            Ok(Some(at)) => {
                let mut old = vec![0u8; len.min(64) as usize];
                let n = self.read_virt(addr, &mut old);
                let bytes: Vec<String> = old[..n].iter().map(|b| format!("{b:02x}")).collect();
                format!(
                    "last write to {range} before icount {origin}: icount {at}, {}\nbytes before it: {}\n{REFRESH_HINT}",
                    self.here(),
                    bytes.join(" ")
                )
            }
            Ok(None) => {
                let why = if interrupted {
                    "interrupted".to_string()
                } else {
                    format!("nothing in the history before icount {origin} changed {range}")
                };
                // The search left the position where it gave up; go back to where gdb is.
                match self.tl.seek(origin) {
                    Ok(_) => format!("{why}; still at icount {origin}"),
                    Err(e) => self.failed(e),
                }
            }
            Err(e) => self.failed(e),
        }
    }

    fn serial(&self) -> String {
        let out = self.tl.recording().serial_output_before(self.tl.icount());
        let skipped = out.len().saturating_sub(MAX_SERIAL_BYTES);
        let text = String::from_utf8_lossy(&out[skipped..]).into_owned();
        match (out.is_empty(), skipped) {
            (true, _) => format!("no serial output before icount {}", self.tl.icount()),
            (false, 0) => text,
            (false, n) => format!("[... {n} earlier bytes]\n{text}"),
        }
    }

    /// Every recorded write to `sector` (`goto` the queued icount to see the code that
    /// issued it).
    fn disk_history(&self, sector: u64) -> String {
        let rec = self.tl.recording();
        match ttvm_replay::disk_history::sector_history(rec, sector) {
            Err(e) => format!("error: {e}"),
            Ok(writes) if writes.is_empty() => format!("sector {sector}: never written in this trace"),
            Ok(writes) => {
                let mut out = format!("sector {sector}: {} write(s)\n", writes.len());
                for w in writes {
                    let queued = w.notified_at.map_or("queue notify not in the trace".to_string(), |n| {
                        format!("queued at icount {n} (monitor goto {n})")
                    });
                    out += &format!(
                        "  icount {:>12}  sectors {}..{}  {queued}\n",
                        w.completed_at,
                        w.sector,
                        w.sector + w.sectors - 1
                    );
                }
                out
            }
        }
    }
}
