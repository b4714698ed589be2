//! Every key binding as a pure state transition: no terminal, no KVM. A small synthetic
//! history stands in for a trace; the symbols are the real `timer` kernel's (parsed from its
//! ELF, which needs no VM).

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers, MouseButton, MouseEvent, MouseEventKind};
use ratatui::layout::Rect;
use ttvm_replay::events::{Event, EventClass, EventKind, IoData, StopKind};
use ttvm_replay::timeline::{Direction, WatchKind, Watchpoint};
use ttvm_tui::app::{Action, App, Ctx, Focus, Layout, Mode, PromptKind};
use ttvm_tui::parse::Reg;
use ttvm_tui::stops::StopTarget;
use ttvm_tui::symbols::Symbols;
use ttvm_tui::trace_info::{EndState, TraceInfo};

fn ev(icount: u64, kind: EventKind) -> Event {
    Event { icount, kind }
}

fn serial(icount: u64, text: &str) -> Vec<Event> {
    text.bytes().map(|byte| ev(icount, EventKind::SerialOut { byte })).collect()
}

/// 100_000 steps: interrupts at 1000, 5000, 9000; I/O at 3000 and 7000; serial lines
/// completed at 2000 ("boot ok"), 6000 ("tick 10"), 8000 ("PANIC: lost update").
fn info() -> TraceInfo {
    let mut e = vec![ev(1000, EventKind::Interrupt { vector: 0x20 })];
    e.extend(serial(2000, "boot ok\n"));
    e.push(ev(3000, EventKind::PortIn { port: 0x3fd, data: IoData::from_slice(&[0x60]) }));
    e.push(ev(5000, EventKind::Interrupt { vector: 0x20 }));
    e.extend(serial(6000, "tick 10\n"));
    e.push(ev(7000, EventKind::PortOut { port: 0x20, data: IoData::from_slice(&[0x20]) }));
    e.extend(serial(8000, "PANIC: lost update\n"));
    e.push(ev(9000, EventKind::Interrupt { vector: 0x21 }));
    e.push(ev(99_999, EventKind::Stop(StopKind::DebugExit(13))));
    TraceInfo::from_parts(100_000, vec![0, 50_000], e, EndState::Panic(13))
}

fn symbols() -> Symbols {
    let k = ttvm_sample_kernels::get("timer").expect("timer kernel");
    Symbols::parse(k.elf).expect("timer symbols")
}

struct T {
    app: App,
    info: TraceInfo,
    symbols: Symbols,
}

impl T {
    fn new() -> Self {
        let info = info();
        Self { app: App::new(&info), info, symbols: symbols() }
    }

    fn at(cursor: u64) -> Self {
        let mut t = Self::new();
        t.app.arrived(cursor, None);
        t
    }

    fn key_mod(&mut self, code: KeyCode, m: KeyModifiers) -> Action {
        let ctx = Ctx { info: &self.info, symbols: &self.symbols };
        self.app.on_key(KeyEvent::new(code, m), ctx)
    }

    fn key(&mut self, code: KeyCode) -> Action {
        self.key_mod(code, KeyModifiers::NONE)
    }

    fn ch(&mut self, c: char) -> Action {
        self.key(KeyCode::Char(c))
    }

    fn typed(&mut self, prompt: char, text: &str) -> Action {
        assert_eq!(self.ch(prompt), Action::None);
        for c in text.chars() {
            assert_eq!(self.ch(c), Action::None);
        }
        self.key(KeyCode::Enter)
    }

    /// Carries out a seek the way the driver reports it.
    fn go(&mut self, a: Action) {
        match a {
            Action::Seek(t) => self.app.arrived(t, None),
            other => panic!("expected a seek, got {other:?}"),
        }
    }

    fn mouse(&mut self, kind: MouseEventKind, x: u16, y: u16) -> Action {
        let ctx = Ctx { info: &self.info, symbols: &self.symbols };
        self.app.on_mouse(MouseEvent { kind, column: x, row: y, modifiers: KeyModifiers::NONE }, ctx)
    }
}

/// The stop points as listed: number, target, how it was typed.
fn listed(t: &T) -> Vec<(u32, StopTarget, String)> {
    t.app.stops.iter().map(|p| (p.id, p.target, p.text.clone())).collect()
}

#[test]
fn arrows_step_by_one_thousand_and_a_million() {
    let mut t = T::at(50_000);
    assert_eq!(t.key(KeyCode::Right), Action::Seek(50_001));
    assert_eq!(t.key(KeyCode::Left), Action::Seek(49_999));
    assert_eq!(t.key_mod(KeyCode::Right, KeyModifiers::SHIFT), Action::Seek(51_000));
    assert_eq!(t.key_mod(KeyCode::Left, KeyModifiers::SHIFT), Action::Seek(49_000));
    // Ctrl: a million, clamped to the history.
    assert_eq!(t.key_mod(KeyCode::Right, KeyModifiers::CONTROL), Action::Seek(100_000));
    assert_eq!(t.key_mod(KeyCode::Left, KeyModifiers::CONTROL), Action::Seek(0));
    // Letter equivalents for terminals that do not report modified arrows.
    assert_eq!(t.ch('l'), Action::Seek(50_001));
    assert_eq!(t.ch('h'), Action::Seek(49_999));
    assert_eq!(t.ch('L'), Action::Seek(51_000));
    assert_eq!(t.ch('H'), Action::Seek(49_000));
}

#[test]
fn stepping_stops_at_both_ends_with_a_message() {
    let mut t = T::at(0);
    assert_eq!(t.key(KeyCode::Left), Action::None);
    assert!(t.app.status.as_deref().unwrap_or("").contains("start"));
    let mut t = T::at(100_000);
    assert_eq!(t.key(KeyCode::Right), Action::None);
    assert!(t.app.status.as_deref().unwrap_or("").contains("end"));
}

#[test]
fn brackets_move_between_events_strictly() {
    let mut t = T::at(1000);
    assert_eq!(t.ch(']'), Action::Seek(2000), "next event is after the cursor, not at it");
    t.app.arrived(2000, None);
    assert_eq!(t.ch('['), Action::Seek(1000));
    let mut t = T::at(500);
    assert_eq!(t.ch('['), Action::None);
    assert!(t.app.status.as_deref().unwrap_or("").contains("no earlier event"));
}

#[test]
fn braces_move_between_events_of_the_selected_kind_and_k_selects_it() {
    let mut t = T::at(0);
    assert_eq!(t.app.kind, EventClass::Interrupt, "interrupts are the default kind");
    let a = t.ch('}');
    assert_eq!(a, Action::Seek(1000));
    t.go(a);
    let a = t.ch('}');
    assert_eq!(a, Action::Seek(5000), "skips the serial output and I/O in between");
    t.go(a);
    assert_eq!(t.ch('{'), Action::Seek(1000));
    // k cycles through the kinds present: interrupt -> io.
    assert_eq!(t.ch('k'), Action::None);
    assert_eq!(t.app.kind, EventClass::Io);
    assert_eq!(t.ch('}'), Action::Seek(7000));
    assert_eq!(t.ch('{'), Action::Seek(3000));
    t.ch('k');
    assert_eq!(t.app.kind, EventClass::SerialOut);
    t.ch('k');
    assert_eq!(t.app.kind, EventClass::Stop);
    t.ch('k');
    assert_eq!(t.app.kind, EventClass::Interrupt, "wraps around");
}

#[test]
fn g_goes_to_a_typed_icount_in_several_notations() {
    let mut t = T::at(10_000);
    assert_eq!(t.typed('g', "12_345"), Action::Seek(12_345));
    assert_eq!(t.app.mode, Mode::Normal);
    assert_eq!(t.typed('g', "0x100"), Action::Seek(256));
    assert_eq!(t.typed('g', "50%"), Action::Seek(50_000));
    assert_eq!(t.typed('g', "+5k"), Action::Seek(15_000));
    assert_eq!(t.typed('g', "-1000"), Action::Seek(9_000));
    assert_eq!(t.typed('g', "200000"), Action::None);
    assert!(t.app.status.as_deref().unwrap_or("").contains("past the end"));
    assert_eq!(t.typed('g', "soon"), Action::None);
    assert!(t.app.status.as_deref().unwrap_or("").contains("not an icount"));
}

#[test]
fn prompts_edit_and_cancel() {
    let mut t = T::at(0);
    t.ch('g');
    t.ch('1');
    t.ch('2');
    t.key(KeyCode::Backspace);
    assert_eq!(t.app.mode, Mode::Prompt { kind: PromptKind::Goto, input: "1".into() });
    t.key_mod(KeyCode::Char('u'), KeyModifiers::CONTROL);
    assert_eq!(t.app.mode, Mode::Prompt { kind: PromptKind::Goto, input: String::new() });
    t.ch('9');
    // Keys that are commands in normal mode are text in a prompt.
    assert_eq!(t.ch('q'), Action::None);
    assert_eq!(t.key(KeyCode::Esc), Action::None);
    assert_eq!(t.app.mode, Mode::Normal);
    assert_eq!(t.app.cursor, 0);
}

#[test]
fn capital_g_end_and_zero_home() {
    let mut t = T::at(500);
    assert_eq!(t.ch('G'), Action::Seek(100_000));
    assert_eq!(t.key(KeyCode::End), Action::Seek(100_000));
    assert_eq!(t.ch('0'), Action::Seek(0));
    assert_eq!(t.key(KeyCode::Home), Action::Seek(0));
    let mut t = T::at(0);
    assert_eq!(t.ch('0'), Action::None, "already there");
}

#[test]
fn b_adds_breakpoints_by_symbol_or_address_and_c_runs_to_them() {
    let mut t = T::at(0);
    assert_eq!(t.ch('c'), Action::None);
    assert!(t.app.status.as_deref().unwrap_or("").contains("no breakpoint"));
    assert_eq!(t.ch('C'), Action::None);
    let kmain = t.symbols.resolve("kmain").expect("kmain");
    assert_eq!(t.typed('b', "kmain"), Action::AddStop(StopTarget::Breakpoint(kmain)));
    assert_eq!(listed(&t), vec![(1, StopTarget::Breakpoint(kmain), "kmain".to_string())]);
    assert_eq!(t.ch('c'), Action::Run(Direction::Forward));
    assert_eq!(t.ch('C'), Action::Run(Direction::Backward));
    // Demangled Rust names, by their last component when unique; each `b` adds one more.
    let tick = t.symbols.resolve("timer::on_tick").expect("on_tick");
    assert_eq!(t.typed('b', "on_tick"), Action::AddStop(StopTarget::Breakpoint(tick)));
    assert_eq!(t.typed('b', "kmain+0x10"), Action::AddStop(StopTarget::Breakpoint(kmain + 0x10)));
    assert_eq!(t.typed('b', "0x100150"), Action::AddStop(StopTarget::Breakpoint(0x100150)));
    let addrs = |t: &T| listed(t).into_iter().map(|(id, target, _)| (id, target)).collect::<Vec<_>>();
    let all = vec![
        (1, StopTarget::Breakpoint(kmain)),
        (2, StopTarget::Breakpoint(tick)),
        (3, StopTarget::Breakpoint(kmain + 0x10)),
        (4, StopTarget::Breakpoint(0x100150)),
    ];
    assert_eq!(addrs(&t), all);
    assert_eq!(t.typed('b', "no_such_function"), Action::None);
    assert_eq!(addrs(&t), all, "a bad name changes nothing");
    assert!(t.app.status.as_deref().unwrap_or("").contains("neither"));
    assert_eq!(t.typed('b', "0x100150"), Action::None);
    assert!(t.app.status.as_deref().unwrap_or("").contains("already set: breakpoint 4"), "{:?}", t.app.status);
    let targets = all.iter().map(|&(_, target)| target).collect();
    assert_eq!(t.typed('b', ""), Action::RemoveStops(targets), "empty clears");
    assert!(t.app.stops.is_empty());
    assert_eq!(t.ch('c'), Action::None);
}

#[test]
fn w_adds_watchpoints_and_d_deletes_them_by_number() {
    let mut t = T::at(0);
    let ticks = t.symbols.resolve("TICKS").expect("TICKS");
    let watch = |addr, len, kind| StopTarget::Watchpoint(Watchpoint { addr, len, kind });
    assert_eq!(t.typed('w', "TICKS"), Action::AddStop(watch(ticks, 8, WatchKind::Write)));
    assert_eq!(t.typed('w', "read TICKS 4"), Action::AddStop(watch(ticks, 4, WatchKind::Read)));
    assert!(t.app.status.as_deref().unwrap_or("").contains("watchpoint 2 read TICKS"), "{:?}", t.app.status);
    assert_eq!(t.typed('w', "access 0x2000 16"), Action::AddStop(watch(0x2000, 16, WatchKind::Access)));
    let kmain = t.symbols.resolve("kmain").expect("kmain");
    assert_eq!(t.typed('b', "kmain"), Action::AddStop(StopTarget::Breakpoint(kmain)));
    assert_eq!(t.typed('w', "0x1000 0"), Action::None);
    assert!(t.app.status.as_deref().unwrap_or("").contains("at least one byte"), "{:?}", t.app.status);
    assert_eq!(t.app.stops.len(), 4);
    // By number, as listed.
    assert_eq!(t.typed('d', "2"), Action::RemoveStops(vec![watch(ticks, 4, WatchKind::Read)]));
    assert!(t.app.status.as_deref().unwrap_or("").contains("deleted watchpoint 2"), "{:?}", t.app.status);
    assert_eq!(t.typed('d', "9"), Action::None);
    assert!(t.app.status.as_deref().unwrap_or("").contains("numbered 9"));
    assert_eq!(t.typed('d', "kmain"), Action::None, "numbers only");
    // An empty `w` deletes the watchpoints and keeps the breakpoints.
    let watches = vec![watch(ticks, 8, WatchKind::Write), watch(0x2000, 16, WatchKind::Access)];
    assert_eq!(t.typed('w', ""), Action::RemoveStops(watches));
    assert_eq!(listed(&t), vec![(4, StopTarget::Breakpoint(kmain), "kmain".to_string())]);
    assert_eq!(t.ch('C'), Action::Run(Direction::Backward));
    assert_eq!(t.typed('d', "all"), Action::RemoveStops(vec![StopTarget::Breakpoint(kmain)]));
    assert_eq!(t.ch('c'), Action::None);
    // Numbers are not reused.
    t.typed('w', "TICKS");
    assert_eq!(listed(&t).first().map(|p| p.0), Some(5));
}

#[test]
fn m_toggles_bookmarks_and_quote_jumps_between_them() {
    let mut t = T::at(0);
    assert_eq!(t.ch('\''), Action::None);
    assert!(t.app.status.as_deref().unwrap_or("").contains("no bookmarks"));
    t.app.arrived(300, None);
    t.ch('m');
    t.app.arrived(100, None);
    t.ch('m');
    t.app.arrived(200, None);
    t.ch('m');
    assert_eq!(t.app.bookmarks.iter().copied().collect::<Vec<_>>(), vec![100, 200, 300]);
    assert_eq!(t.ch('\''), Action::Seek(300));
    assert_eq!(t.ch('"'), Action::Seek(100));
    t.app.arrived(300, None);
    assert_eq!(t.ch('\''), Action::Seek(100), "wraps to the first");
    t.ch('m');
    assert!(!t.app.bookmarks.contains(&300), "m again removes it");
}

#[test]
fn slash_finds_a_line_and_jumps_to_when_it_was_printed() {
    let mut t = T::at(0);
    // The line was completed by the step at 8000: at 8001 it is on the console.
    assert_eq!(t.typed('/', "PANIC"), Action::Seek(8001));
    assert!(t.app.status.as_deref().unwrap_or("").contains("PANIC: lost update"));
    assert_eq!(t.app.search.as_deref(), Some("PANIC"));
    // Case-insensitive when nothing matches exactly.
    let mut t = T::at(0);
    assert_eq!(t.typed('/', "tick"), Action::Seek(6001));
    let mut t = T::at(0);
    assert_eq!(t.typed('/', "not printed"), Action::None);
    assert!(t.app.status.as_deref().unwrap_or("").contains("not in the serial output"));
}

#[test]
fn n_and_capital_n_repeat_the_search() {
    let mut t = T::at(0);
    assert_eq!(t.ch('n'), Action::None, "no search yet");
    let a = t.typed('/', "o");
    assert_eq!(a, Action::Seek(2001), "boot ok");
    t.go(a);
    let a = t.ch('n');
    assert_eq!(a, Action::Seek(8001), "lost update");
    t.go(a);
    assert_eq!(t.ch('n'), Action::Seek(2001), "wraps");
    assert_eq!(t.ch('N'), Action::Seek(2001));
}

#[test]
fn a_sets_the_memory_target() {
    let mut t = T::at(0);
    assert_eq!(t.app.mem.reg, Some(Reg::Rsp), "the stack by default");
    assert_eq!(t.typed('a', "rbp-0x20"), Action::RefreshMemory);
    assert_eq!((t.app.mem.reg, t.app.mem.offset), (Some(Reg::Rbp), 0x20u64.wrapping_neg()));
    assert_eq!(t.app.focus, Focus::Memory);
    let ticks = t.symbols.resolve("TICKS").expect("TICKS");
    assert_eq!(t.typed('a', "TICKS"), Action::RefreshMemory);
    assert_eq!((t.app.mem.reg, t.app.mem.offset), (None, ticks));
    assert_eq!(t.typed('a', "nowhere"), Action::None);
    assert_eq!(t.app.mem.offset, ticks, "unchanged");
}

#[test]
fn tab_cycles_focus_both_ways() {
    let mut t = T::at(0);
    let mut seen = vec![t.app.focus];
    for _ in 0..5 {
        t.key(KeyCode::Tab);
        seen.push(t.app.focus);
    }
    assert_eq!(
        seen,
        vec![Focus::Disasm, Focus::Registers, Focus::Events, Focus::Console, Focus::Memory, Focus::Disasm]
    );
    t.key(KeyCode::BackTab);
    assert_eq!(t.app.focus, Focus::Memory);
}

#[test]
fn question_mark_opens_help_and_any_key_closes_it() {
    let mut t = T::at(0);
    t.ch('?');
    assert_eq!(t.app.mode, Mode::Help);
    assert_eq!(t.ch('G'), Action::None, "the key only closes the help");
    assert_eq!(t.app.mode, Mode::Normal);
}

#[test]
fn q_and_ctrl_c_quit() {
    let mut t = T::at(0);
    assert_eq!(t.ch('q'), Action::Quit);
    assert_eq!(t.key_mod(KeyCode::Char('c'), KeyModifiers::CONTROL), Action::Quit);
}

#[test]
fn while_busy_only_esc_and_q_do_anything() {
    let mut t = T::at(0);
    let a = t.ch('G');
    assert_eq!(a, Action::Seek(100_000));
    t.app.started();
    assert_eq!(t.key(KeyCode::Right), Action::None);
    assert!(t.app.status.as_deref().unwrap_or("").contains("Esc cancels"));
    assert_eq!(t.key(KeyCode::Esc), Action::Cancel);
    assert_eq!(t.ch('q'), Action::Quit);
    t.app.arrived(40_000, Some("cancelled at icount 40000".into()));
    assert!(!t.app.busy);
    assert_eq!(t.app.cursor, 40_000);
}

#[test]
fn esc_dismisses_errors_and_failures_mark_divergence() {
    let mut t = T::at(0);
    t.app.failed(4242, "replay diverged".into(), true);
    assert_eq!(t.app.divergence, Some(4242));
    assert_eq!(t.app.cursor, 4242);
    assert!(t.app.error.is_some());
    t.key(KeyCode::Esc);
    assert!(t.app.error.is_none());
    assert_eq!(t.app.divergence, Some(4242), "the marker stays on the timeline");
}

#[test]
fn up_down_select_events_and_enter_jumps_to_one() {
    let mut t = T::at(2500);
    assert_eq!(t.key(KeyCode::Enter), Action::None, "Enter means nothing outside the event pane");
    t.app.focus = Focus::Events;
    assert_eq!(t.key(KeyCode::Enter), Action::None);
    // The first event at or after the cursor is the I/O at 3000; Up selects the one before.
    t.key(KeyCode::Down);
    let sel = t.app.event_sel.expect("selection");
    assert_eq!(t.info.events[sel].icount, 5000);
    assert_eq!(t.app.kind, EventClass::Interrupt, "selecting an event selects its kind");
    t.key(KeyCode::Up);
    t.key(KeyCode::Up);
    let sel = t.app.event_sel.expect("selection");
    assert_eq!(t.info.events[sel].icount, 2000);
    assert_eq!(t.app.kind, EventClass::SerialOut);
    t.key(KeyCode::PageUp);
    assert_eq!(t.app.event_sel, Some(0), "clamped at the first event");
    assert_eq!(t.key(KeyCode::Enter), Action::Seek(1000));
}

#[test]
fn up_down_scroll_the_console_and_the_memory() {
    let mut t = T::at(9000);
    t.app.focus = Focus::Console;
    t.key(KeyCode::Up);
    assert_eq!(t.app.console_scroll, 1);
    t.key(KeyCode::PageUp);
    assert_eq!(t.app.console_scroll, 3, "clamped to the number of lines");
    t.key(KeyCode::PageDown);
    assert_eq!(t.app.console_scroll, 0);
    t.app.focus = Focus::Memory;
    assert_eq!(t.key(KeyCode::Down), Action::RefreshMemory);
    assert_eq!(t.app.mem.offset, 16);
    assert_eq!(t.key(KeyCode::PageUp), Action::RefreshMemory);
    assert_eq!(t.app.mem.offset, 16u64.wrapping_sub(128));
    t.app.focus = Focus::Disasm;
    assert_eq!(t.key(KeyCode::Down), Action::None);
}

#[test]
fn arriving_resets_selection_and_scroll() {
    let mut t = T::at(9000);
    t.app.focus = Focus::Console;
    t.key(KeyCode::Up);
    t.app.event_sel = Some(1);
    t.app.arrived(10, None);
    assert_eq!((t.app.cursor, t.app.console_scroll, t.app.event_sel), (10, 0, None));
}

#[test]
fn clicking_the_timeline_jumps_and_clicking_a_pane_focuses_it() {
    let mut t = T::at(0);
    t.app.layout = Layout {
        timeline: Rect::new(10, 1, 100, 6),
        panes: vec![(Focus::Registers, Rect::new(0, 10, 30, 10)), (Focus::Console, Rect::new(30, 10, 30, 10))],
    };
    let down = MouseEventKind::Down(MouseButton::Left);
    assert_eq!(t.mouse(down, 60, 3), Action::Seek(50_000), "the middle column is half way");
    assert_eq!(t.mouse(down, 10, 3), Action::None, "column 0 is icount 0, where we are");
    assert_eq!(t.mouse(down, 109, 3), Action::Seek(100_000), "the last column is the end");
    assert_eq!(t.mouse(down, 5, 12), Action::None);
    assert_eq!(t.app.focus, Focus::Registers);
    t.app.arrived(9000, None);
    assert_eq!(t.mouse(MouseEventKind::ScrollUp, 40, 12), Action::None);
    assert_eq!((t.app.focus, t.app.console_scroll), (Focus::Console, 1));
    // Clicks are ignored while busy.
    t.app.started();
    assert_eq!(t.mouse(down, 60, 3), Action::None);
}

#[test]
fn timeline_columns_and_icounts_agree() {
    let l = Layout { timeline: Rect::new(0, 0, 80, 1), panes: vec![] };
    for col in 0..80u16 {
        let i = l.icount_at(col, 1_000_000).expect("inside");
        assert_eq!(Layout::column_of(80, i, 1_000_000), col, "a click lands in the column clicked");
    }
    assert_eq!(l.icount_at(80, 1000), None);
}

#[test]
fn timeline_buckets_hold_exactly_the_icounts_of_their_column() {
    for (width, length) in [(80u16, 1_000_000u64), (3, 10), (150, 25_916), (100, 50)] {
        let mut next = 0;
        for col in 0..width {
            let (lo, hi) = Layout::bucket(col, width, length);
            assert_eq!(lo, next, "buckets tile the history ({width} cols, {length} steps)");
            for i in lo..hi.min(lo + 50) {
                assert_eq!(Layout::column_of(width, i, length), col, "icount {i} ({width} cols, {length} steps)");
            }
            next = hi;
        }
        assert_eq!(next, length + 1, "the last column holds the end");
    }
}
