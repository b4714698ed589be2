//! The UI drawn into ratatui's TestBackend over a real trace of the `timer` sample kernel.
//! What the screen shows is checked against an independent replay of the same trace (a
//! fresh Timeline, the one gdb serves), not against numbers copied from a previous run.

mod common;

use std::rc::Rc;
use std::time::Duration;

use common::{draw, key, prompt, require_kvm, rows, shift, tempdir, text, timer_trace};
use crossterm::event::{Event, KeyCode};
use ratatui::backend::TestBackend;
use ratatui::style::Color;
use ratatui::Terminal;
use ttvm_replay::events::{EventKind, IoData};
use ttvm_replay::recording::Recording;
use ttvm_replay::timeline::{Stop, Timeline, WatchKind, Watchpoint};
use ttvm_tui::event::{run_loop, LoopEnd, ScriptedInput};
use ttvm_tui::Session;

const W: u16 = 150;
const H: u16 = 45;

fn timeline(path: &std::path::Path) -> Timeline {
    let rec = Rc::new(Recording::open(path).expect("open"));
    Timeline::new(rec, &ttvm_replay::stepping::host_signature()).expect("timeline")
}

/// The icount at which the console line `text` has just been printed.
fn printed_at(s: &Session, text: &str) -> u64 {
    let k = (0..s.info.lines.len()).find(|&k| s.info.line_text(k) == text).expect("line in the trace");
    s.info.lines[k].printed_at
}

#[test]
fn timer_at_a_known_icount_shows_rip_code_console_and_markers() {
    if !require_kvm("timer_at_a_known_icount_shows_rip_code_console_and_markers") {
        return;
    }
    let path = timer_trace();
    let mut s = Session::open(&path, None).expect("open");
    let n = printed_at(&s, "tick 20");
    prompt(&mut s, 'g', &n.to_string());
    assert_eq!(s.app.cursor, n);
    assert!(s.app.error.is_none(), "{:?}", s.app.error);

    // What gdb's timeline says is at n.
    let mut tl = timeline(&path);
    assert_eq!(tl.seek(n).expect("seek"), Stop::Done);
    let m = tl.machine();
    let (regs, sregs) = (m.vm.vcpu().regs(), m.vm.vcpu().sregs());
    let insn = ttvm_vmm::disasm::disassemble_at_rip(m.vm.ram(), &regs, &sregs, 1);
    let insn = &insn.first().expect("an instruction at RIP").text;

    let b = draw(&mut s, W, H);
    let screen = text(&b);
    let lines = rows(&b);
    assert!(screen.contains(&format!("rip  {:016x}", regs.rip)), "RIP in the register pane:\n{screen}");
    assert!(screen.contains(&format!("rsp  {:016x}", regs.rsp)), "RSP in the register pane:\n{screen}");
    let current = lines.iter().find(|l| l.contains('▶')).expect("a current-instruction line");
    assert!(current.contains(&format!("{:016x}", regs.rip)) && current.contains(insn.as_str()), "{current}\n{screen}");
    // The kernel's symbols and DWARF: RIP is in the serial writer, printed from support/.
    let func = s.symbols.describe(regs.rip).expect("RIP has a symbol");
    assert!(screen.contains(&func), "function name {func} shown:\n{screen}");
    assert!(screen.contains(".rs:"), "a source file:line shown:\n{screen}");
    // The console up to the cursor only.
    assert!(screen.contains("tick 20") && screen.contains("tick 10"), "{screen}");
    assert!(!screen.contains("tick 30"), "output after the cursor must not show:\n{screen}");
    // Title: cursor as icount and fraction; the end state.
    let pct = n as f64 * 100.0 / s.info.length as f64;
    assert!(lines[0].contains(&format!("icount {n} / {} ({pct:.2}%)", s.info.length)), "{}", lines[0]);
    assert!(lines[0].contains("end: exit 0"), "{}", lines[0]);
    // Lanes: interrupts (timer vector 0x20), I/O, serial lines, checkpoint at 0, end marker.
    let lane = |name: &str| lines.iter().find(|l| l.starts_with(&format!("│{name} "))).expect(name).clone();
    assert!(lane("irq").contains('┃'), "{}", lane("irq"));
    assert!(lane("io").chars().any(|c| "░▒▓█".contains(c)), "{}", lane("io"));
    assert!(lane("serial").contains('•'), "{}", lane("serial"));
    assert!(lane("marks").contains('┊') && lane("marks").contains('■'), "{}", lane("marks"));
    assert!(screen.contains("0x20"), "the vector legend");
    // The cursor mark sits in the column for n.
    let axis = &lines[8]; // below the eight lanes
    let lanes_x = 1 + 8;
    let col = ttvm_tui::app::Layout::column_of(W - 2 - 8, n, s.info.length) as usize;
    assert_eq!(axis.chars().nth(lanes_x + col), Some('▲'), "{axis}");

    // A kernel path too long for the title gives way, so the icount and end stay whole.
    s.info.title = format!("/{} · timer.ttvm", "very-long-directory/".repeat(10));
    let lines = rows(&draw(&mut s, W, H));
    assert!(lines[0].contains(&format!("icount {n} / {} ({pct:.2}%)", s.info.length)), "{}", lines[0]);
    assert!(lines[0].contains("end: exit 0") && lines[0].contains("…"), "{}", lines[0]);
    assert!(lines[0].contains("directory/ · timer.ttvm"), "the file names stay: {}", lines[0]);
}

#[test]
fn stepping_back_then_forward_redraws_the_same_screen() {
    if !require_kvm("stepping_back_then_forward_redraws_the_same_screen") {
        return;
    }
    let path = timer_trace();
    let mut s = Session::open(&path, None).expect("open");
    let n = printed_at(&s, "tick 30") + 7;
    prompt(&mut s, 'g', &n.to_string());
    let before = draw(&mut s, W, H);
    s.press(key(KeyCode::Left));
    assert_eq!(s.app.cursor, n - 1);
    let back = draw(&mut s, W, H);
    assert_ne!(back, before, "one step back changes the screen");
    s.press(key(KeyCode::Right));
    assert_eq!(s.app.cursor, n);
    assert_eq!(draw(&mut s, W, H), before, "back then forward: identical screen, styles included");
    s.press(shift(KeyCode::Left));
    assert_eq!(s.app.cursor, n - 1000);
    s.press(shift(KeyCode::Right));
    assert_eq!(draw(&mut s, W, H), before, "1000 back then 1000 forward: identical screen");
}

#[test]
fn registers_changed_by_the_last_step_are_highlighted() {
    if !require_kvm("registers_changed_by_the_last_step_are_highlighted") {
        return;
    }
    let path = timer_trace();
    let mut s = Session::open(&path, None).expect("open");
    let n = printed_at(&s, "tick 10");
    prompt(&mut s, 'g', &n.to_string());
    let mut tl = timeline(&path);
    tl.seek(n - 1).expect("seek");
    let before = tl.machine().vm.vcpu().regs();
    tl.step_forward().expect("step");
    let after = tl.machine().vm.vcpu().regs();
    let b = draw(&mut s, W, H);
    let lines = rows(&b);
    // The style of the first digit of a register's value.
    let style_of = |name: &str, value: u64| {
        let needle = format!("{name:<4} {value:016x}");
        let (y, l) = lines.iter().enumerate().find(|(_, l)| l.contains(&needle)).expect(name);
        let x = l[..l.find(&needle).expect("found")].chars().count() + 5;
        b[(x as u16, y as u16)].fg
    };
    assert_eq!(style_of("rip", after.rip), Color::Yellow, "RIP always changes");
    let pairs = [("rax", before.rax, after.rax), ("rcx", before.rcx, after.rcx), ("rdx", before.rdx, after.rdx)];
    for (name, was, is) in pairs {
        let want = if was != is { Color::Yellow } else { Color::Reset };
        assert_eq!(style_of(name, is), want, "{name}: {was:#x} -> {is:#x}");
    }
}

#[test]
fn breakpoint_runs_stop_where_the_gdb_timeline_stops() {
    if !require_kvm("breakpoint_runs_stop_where_the_gdb_timeline_stops") {
        return;
    }
    let path = timer_trace();
    let mut s = Session::open(&path, None).expect("open");
    let on_tick = s.symbols.resolve("timer::on_tick").expect("on_tick");
    prompt(&mut s, 'b', "on_tick");
    s.press(key(KeyCode::Char('c')));
    let first = s.app.cursor;
    s.press(key(KeyCode::Char('c')));
    let second = s.app.cursor;
    s.press(key(KeyCode::Char('c')));
    let third = s.app.cursor;
    assert!(first < second && second < third, "{first} {second} {third}");
    assert_eq!(s.driver.view().regs.regs.rip, on_tick);

    let mut tl = timeline(&path);
    tl.add_breakpoint(on_tick);
    let mut hits = Vec::new();
    for _ in 0..3 {
        assert_eq!(tl.run_forward().expect("run"), Stop::Breakpoint { addr: on_tick });
        hits.push(tl.icount());
    }
    assert_eq!(hits, vec![first, second, third], "c stops where gdb's continue stops");

    s.press(key(KeyCode::Char('C')));
    assert_eq!(s.app.cursor, second);
    assert_eq!(tl.run_backward().expect("run back"), Stop::Breakpoint { addr: on_tick });
    assert_eq!(tl.icount(), second, "C stops where gdb's reverse-continue stops");

    let screen = text(&draw(&mut s, W, H));
    assert!(screen.contains("<timer::on_tick>:"), "function label:\n{screen}");
    assert!(screen.contains("timer/main.rs:"), "source line:\n{screen}");
    let current = screen.lines().find(|l| l.contains('▶')).expect("current line");
    assert!(current.contains(&format!("{on_tick:016x}")), "{current}");
    // Backward with no earlier hit ends at the start of the history.
    prompt(&mut s, 'g', &(first - 1).to_string());
    s.press(key(KeyCode::Char('C')));
    assert_eq!(s.app.cursor, 0);
    assert!(s.app.status.as_deref().unwrap_or("").contains("start of the history"), "{:?}", s.app.status);
}

/// What stopped the reference timeline, named as the UI names it.
fn named(stop: &Stop, on_tick: u64, kmain: u64) -> &'static str {
    match stop {
        Stop::Breakpoint { addr } if *addr == on_tick => "breakpoint 1 on_tick",
        Stop::Breakpoint { addr } if *addr == kmain => "breakpoint 2 kmain",
        Stop::Watchpoint { watch } if watch.kind == WatchKind::Write => "watchpoint 3 write TICKS",
        Stop::Watchpoint { .. } => "watchpoint 4 read TICKS",
        other => panic!("unexpected stop {other:?}"),
    }
}

#[test]
fn several_breakpoints_and_watchpoints_stop_where_the_gdb_timeline_stops() {
    if !require_kvm("several_breakpoints_and_watchpoints_stop_where_the_gdb_timeline_stops") {
        return;
    }
    let path = timer_trace();
    let mut s = Session::open(&path, None).expect("open");
    let on_tick = s.symbols.resolve("timer::on_tick").expect("on_tick");
    let kmain = s.symbols.resolve("kmain").expect("kmain");
    let ticks = s.symbols.resolve("TICKS").expect("TICKS");
    prompt(&mut s, 'b', "on_tick");
    prompt(&mut s, 'b', "kmain");
    prompt(&mut s, 'w', "TICKS");
    let write = Watchpoint { addr: ticks, len: 8, kind: WatchKind::Write };
    // The UI's list is the timeline's set.
    let tl_ui = s.driver.timeline();
    assert_eq!(tl_ui.breakpoints(), &std::collections::BTreeSet::from([kmain, on_tick]));
    assert_eq!(tl_ui.watchpoints(), &[write]);
    let screen = text(&draw(&mut s, W, H));
    assert!(screen.contains("stops:") && screen.contains(&format!("1 ● on_tick {on_tick:#x}")), "{screen}");
    assert!(screen.contains(&format!("3 ◆ write TICKS {ticks:#x}+8")), "{screen}");

    // gdb's timeline with the same stops: c and C stop where continue and reverse-continue do.
    let mut tl = timeline(&path);
    tl.add_breakpoint(on_tick);
    tl.add_breakpoint(kmain);
    tl.add_watchpoint(write);
    let mut kinds = std::collections::BTreeSet::new();
    for _ in 0..6 {
        let stop = tl.run_forward().expect("run");
        s.press(key(KeyCode::Char('c')));
        assert_eq!(s.app.cursor, tl.icount(), "c stopped elsewhere than continue ({stop:?})");
        let note = s.app.status.clone().unwrap_or_default();
        let name = named(&stop, on_tick, kmain);
        assert!(note.contains(name) && note.contains(&format!("hit at icount {}", tl.icount())), "{note} vs {stop:?}");
        kinds.insert(name);
    }
    assert_eq!(kinds.len(), 3, "both breakpoints and the watchpoint stopped a run: {kinds:?}");
    for _ in 0..3 {
        let stop = tl.run_backward().expect("run back");
        s.press(key(KeyCode::Char('C')));
        assert_eq!(s.app.cursor, tl.icount(), "C stopped elsewhere than reverse-continue ({stop:?})");
        let note = s.app.status.clone().unwrap_or_default();
        assert!(note.contains(named(&stop, on_tick, kmain)) && note.contains("running backward"), "{note}");
    }

    // Without the breakpoints, a read watchpoint: kmain's loop reads TICKS.
    prompt(&mut s, 'd', "1 2");
    prompt(&mut s, 'w', "read TICKS");
    let read = Watchpoint { kind: WatchKind::Read, ..write };
    assert!(s.driver.timeline().breakpoints().is_empty());
    assert_eq!(s.driver.timeline().watchpoints(), &[write, read]);
    tl.remove_breakpoint(on_tick);
    tl.remove_breakpoint(kmain);
    tl.add_watchpoint(read);
    let mut reads = 0;
    for _ in 0..4 {
        let stop = tl.run_forward().expect("run");
        s.press(key(KeyCode::Char('c')));
        assert_eq!(s.app.cursor, tl.icount(), "{stop:?}");
        let note = s.app.status.clone().unwrap_or_default();
        assert!(note.contains(named(&stop, on_tick, kmain)), "{note} vs {stop:?}");
        reads += usize::from(stop == Stop::Watchpoint { watch: read });
    }
    assert!(reads > 0, "the read watchpoint never stopped a run");
    let screen = text(&draw(&mut s, W, H));
    assert!(screen.contains("4 ◆ read TICKS") && !screen.contains("1 ● on_tick"), "{screen}");

    // All deleted: nothing to run to, in the UI as in the timeline.
    prompt(&mut s, 'd', "all");
    assert!(s.driver.timeline().watchpoints().is_empty() && s.driver.timeline().breakpoints().is_empty());
    let at = s.app.cursor;
    s.press(key(KeyCode::Char('c')));
    assert_eq!(s.app.cursor, at);
    assert!(!text(&draw(&mut s, W, H)).contains("stops:"));
}

/// A long backward run shows its progress, runs in slices, and ends where an uninterrupted
/// reverse-continue ends.
#[test]
fn a_sliced_backward_run_shows_progress_and_stops_where_gdb_does() {
    if !require_kvm("a_sliced_backward_run_shows_progress_and_stops_where_gdb_does") {
        return;
    }
    let path = timer_trace();
    let mut s = Session::open(&path, None).expect("open");
    let kmain = s.symbols.resolve("kmain").expect("kmain");
    prompt(&mut s, 'b', "kmain");
    s.press(key(KeyCode::Char('G')));
    let len = s.info.length;
    assert_eq!(s.app.cursor, len);
    s.key(key(KeyCode::Char('C')));
    let mut slices = 0;
    while s.busy() {
        s.work(Duration::from_millis(1));
        slices += 1;
        if slices == 1 {
            assert!(s.busy(), "a 1 ms slice cannot scan {len} steps");
            let p = s.progress().expect("progress");
            assert!(p.what.contains("running backward") && p.fraction > 0.0 && p.fraction < 1.0, "{p:?}");
            let screen = text(&draw(&mut s, W, H));
            assert!(screen.contains("Esc cancels") && screen.contains("running backward"), "{screen}");
        }
    }
    assert!(slices > 2, "{slices} slices");
    let mut tl = timeline(&path);
    tl.add_breakpoint(kmain);
    tl.seek(len).expect("seek");
    assert_eq!(tl.run_backward().expect("run back"), Stop::Breakpoint { addr: kmain });
    assert_eq!(s.app.cursor, tl.icount());
    assert_eq!(s.driver.view().regs.regs.rip, kmain);
    assert!(s.app.status.as_deref().unwrap_or("").contains("breakpoint 1 kmain"), "{:?}", s.app.status);
}

#[test]
fn a_diverging_trace_shows_the_error_with_its_position_and_stays_usable() {
    if !require_kvm("a_diverging_trace_shows_the_error_with_its_position_and_stays_usable") {
        return;
    }
    let dir = tempdir();
    let good = timer_trace();
    let bad = dir.path().join("edited.ttvm");
    // Claim the UART transmitter is busy the first time the guest asks.
    let mut at = 0;
    common::rewrite_events(&good, &bad, |e| match &mut e.kind {
        EventKind::PortIn { port: 0x3fd, data } => {
            *data = IoData::from_slice(&[0x00]);
            at = e.icount;
            true
        }
        _ => false,
    });
    let mut s = Session::open(&bad, None).expect("a diverging trace still opens");
    s.press(key(KeyCode::Char('G')));
    let err = s.app.error.clone().expect("the divergence is shown");
    assert!(err.icount >= at && err.icount <= at + 20, "diverged at {}, edited event at {at}", err.icount);
    assert_eq!(s.app.divergence, Some(err.icount));
    let screen = text(&draw(&mut s, W, H));
    assert!(screen.contains("replay error") && screen.contains(&format!("at icount {}", err.icount)), "{screen}");
    assert!(screen.contains("diverged"), "{screen}");
    assert!(screen.contains('✖'), "divergence marker on the timeline:\n{screen}");
    // The history before it can still be explored.
    s.press(key(KeyCode::Esc));
    s.press(key(KeyCode::Char('0')));
    assert_eq!(s.app.cursor, 0);
    prompt(&mut s, 'g', &(at - 5).to_string());
    assert_eq!((s.app.cursor, s.app.error.is_none()), (at - 5, true));
}

#[test]
fn a_too_small_terminal_gets_a_clear_message_and_help_lists_the_keys() {
    if !require_kvm("a_too_small_terminal_gets_a_clear_message_and_help_lists_the_keys") {
        return;
    }
    let path = timer_trace();
    let mut s = Session::open(&path, None).expect("open");
    let screen = text(&draw(&mut s, 60, 20));
    assert!(screen.contains("too small") && screen.contains("60x20") && screen.contains("80x24"), "{screen}");
    let screen = text(&draw(&mut s, 80, 24));
    assert!(!screen.contains("too small") && screen.contains("Registers"), "{screen}");
    // The help bar names the keys; ? lists them all.
    assert!(screen.contains("? help") && screen.contains("q quit"), "{screen}");
    s.press(key(KeyCode::Char('?')));
    let screen = text(&draw(&mut s, W, H));
    assert!(
        screen.contains("ttvm tui keys") && screen.contains("run forward / backward to the breakpoint"),
        "{screen}"
    );
    s.press(key(KeyCode::Char('x')));
    assert!(!text(&draw(&mut s, W, H)).contains("ttvm tui keys"));
}

#[test]
fn long_seeks_show_progress_and_esc_cancels_them() {
    if !require_kvm("long_seeks_show_progress_and_esc_cancels_them") {
        return;
    }
    let path = timer_trace();
    // A stepped timeline: a seek's native run to a waypoint (format 8) takes a few
    // milliseconds and is not sliced, so a stepped seek is the long one here.
    let rec = Rc::new(Recording::open(&path).expect("open"));
    let info = ttvm_tui::trace_info::TraceInfo::from_recording(&rec, "timer.ttvm");
    let mut tl = Timeline::new(rec, &ttvm_replay::stepping::host_signature()).expect("timeline");
    tl.set_free_runs(false);
    let mut s = Session::from_parts(info, ttvm_tui::symbols::Symbols::empty(), tl);
    let len = s.info.length;
    s.key(key(KeyCode::Char('G')));
    // Slices far shorter than the seek: it is still going after the first.
    s.work(Duration::from_millis(1));
    assert!(s.busy(), "a 1 ms slice cannot replay {len} steps");
    let p = s.progress().expect("progress");
    assert!(p.fraction > 0.0 && p.fraction < 1.0, "{p:?}");
    let screen = text(&draw(&mut s, W, H));
    assert!(screen.contains("Esc cancels") && screen.contains("seeking to icount"), "{screen}");
    s.key(key(KeyCode::Esc));
    assert!(!s.busy());
    let c = s.app.cursor;
    assert!(c > 0 && c < len, "cancelled part way: {c}");
    assert!(s.app.status.as_deref().unwrap_or("").contains("cancelled"));
    // The view is of where the timeline really is.
    let mut tl = timeline(&path);
    tl.seek(c).expect("seek");
    assert_eq!(s.driver.view().regs.regs.rip, tl.machine().vm.vcpu().rip());

    // The event loop, generic over the backend: G, then q once it is done.
    let mut term = Terminal::new(TestBackend::new(W, H)).expect("terminal");
    let mut input = ScriptedInput([Event::Key(key(KeyCode::Char('G'))), Event::Key(key(KeyCode::Char('q')))].into());
    let end = run_loop(&mut term, &mut s, &mut input, &|| None, true).expect("loop");
    assert_eq!(end, LoopEnd::Quit);
    assert_eq!(s.app.cursor, len);
    let screen = text(term.backend().buffer());
    assert!(screen.contains(&format!("icount {len} / {len}")), "{screen}");
}

#[test]
fn opening_a_file_that_is_not_a_trace_fails_cleanly() {
    let dir = tempdir();
    let p = dir.path().join("junk.ttvm");
    std::fs::write(&p, b"definitely not a trace").expect("write");
    match Session::open(&p, None) {
        Err(ttvm_tui::TuiError::Trace(e)) => assert!(e.to_string().contains("not a ttvm trace"), "{e}"),
        other => panic!("expected a trace error, got {other:?}"),
    }
}
