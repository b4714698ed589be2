//! The UI's state and its transitions. Pure: no terminal, no replay. A key or mouse event
//! changes the state and returns an [`Action`] for the driver (which owns the timeline) to
//! carry out; the driver reports back with [`App::arrived`] and friends. Tests drive this
//! directly, one key at a time.

use std::collections::BTreeSet;

use crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers, MouseButton, MouseEvent, MouseEventKind};
use ratatui::layout::{Position, Rect};
use ttvm_replay::events::EventClass;
use ttvm_replay::timeline::Direction;

use crate::parse::{parse_address, parse_icount, parse_ids, parse_mem_target, parse_watch, MemTarget};
use crate::stops::{StopList, StopPoint, StopPointKind, StopTarget};
use crate::symbols::Symbols;
use crate::trace_info::TraceInfo;

/// Steps per Shift-arrow.
pub const BIG_STEP: u64 = 1_000;
/// Steps per Ctrl-arrow.
pub const HUGE_STEP: u64 = 1_000_000;
/// Bytes per memory row.
pub const MEM_ROW: i64 = 16;
/// Rows per PageUp/PageDown.
pub const PAGE_ROWS: usize = 8;

/// The panes, in Tab order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Focus {
    /// Disassembly around RIP.
    Disasm,
    /// Registers.
    Registers,
    /// Event list.
    Events,
    /// Serial console.
    Console,
    /// Memory hex view.
    Memory,
}

impl Focus {
    /// Tab order.
    pub const ORDER: [Focus; 5] = [Focus::Disasm, Focus::Registers, Focus::Events, Focus::Console, Focus::Memory];

    fn index(self) -> usize {
        Self::ORDER.iter().position(|&f| f == self).unwrap_or(0)
    }

    /// The next pane in Tab order.
    pub fn next(self) -> Self {
        Self::ORDER[(self.index() + 1) % Self::ORDER.len()]
    }

    /// The previous pane in Tab order.
    pub fn prev(self) -> Self {
        Self::ORDER[(self.index() + Self::ORDER.len() - 1) % Self::ORDER.len()]
    }
}

/// What a prompt asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PromptKind {
    /// `g`: an icount.
    Goto,
    /// `b`: a breakpoint address or symbol.
    Breakpoint,
    /// `w`: a watchpoint: kind, address or symbol, length.
    Watch,
    /// `d`: the breakpoints and watchpoints to delete.
    Delete,
    /// `/`: text to find in the serial output.
    Search,
    /// `a`: what the memory pane shows.
    Memory,
}

impl PromptKind {
    /// The prompt's label.
    pub fn label(self) -> &'static str {
        match self {
            PromptKind::Goto => "go to icount (1234, 0x4d2, 50%, +1000, -5k)",
            PromptKind::Breakpoint => "add a breakpoint at (address or symbol; empty deletes all breakpoints)",
            PromptKind::Watch => "watch [read|access] ADDRESS [LEN] (default write, 8 bytes; empty deletes all)",
            PromptKind::Delete => "delete breakpoints/watchpoints (their numbers, e.g. 1 3; or all)",
            PromptKind::Search => "search serial output",
            PromptKind::Memory => "memory at (register, address or symbol, e.g. rsp, 0x1000, COUNTER, rbp-0x20)",
        }
    }
}

/// The input mode.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Keys are commands.
    Normal,
    /// Keys edit a one-line prompt.
    Prompt {
        /// What is asked.
        kind: PromptKind,
        /// Typed so far.
        input: String,
    },
    /// The `?` overlay; any key closes it.
    Help,
}

/// Work for the driver.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Nothing to do beyond redrawing.
    None,
    /// Leave the UI.
    Quit,
    /// Move to this position.
    Seek(u64),
    /// Run to the next (forward) or previous (backward) stop of any breakpoint or
    /// watchpoint.
    Run(Direction),
    /// Add a breakpoint or watchpoint to the timeline.
    AddStop(StopTarget),
    /// Remove these breakpoints and watchpoints from the timeline.
    RemoveStops(Vec<StopTarget>),
    /// Stop the operation in progress where it is.
    Cancel,
    /// The memory pane's address changed: read memory again.
    RefreshMemory,
}

/// An error shown over the panes, with the position it happened at.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ErrorNote {
    /// Where it happened.
    pub icount: u64,
    /// What happened.
    pub message: String,
}

/// Where the widgets were drawn, for mouse hit-testing (filled in by the renderer).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Layout {
    /// The timeline's lanes (columns map to icounts).
    pub timeline: Rect,
    /// Each pane's area.
    pub panes: Vec<(Focus, Rect)>,
}

impl Layout {
    /// The icount a click on column `x` of the timeline means: the first icount that column
    /// stands for, and the end of the history for the last column.
    pub fn icount_at(&self, x: u16, length: u64) -> Option<u64> {
        let t = self.timeline;
        if t.width == 0 || x < t.x || x >= t.x + t.width {
            return None;
        }
        let col = x - t.x;
        Some(if col + 1 == t.width { length } else { Self::bucket(col, t.width, length).0 })
    }

    /// The timeline column showing `icount`: floor(icount · width / length), the last column
    /// for the end.
    pub fn column_of(width: u16, icount: u64, length: u64) -> u16 {
        if width == 0 {
            return 0;
        }
        if icount >= length {
            return width - 1;
        }
        ((icount as u128 * u128::from(width) / u128::from(length.max(1))) as u64).min(u64::from(width) - 1) as u16
    }

    /// The icounts `[lo, hi)` column `col` stands for: exactly those `column_of` maps to it
    /// (lo = ceil(col · length / width)); the last column also holds the end.
    pub fn bucket(col: u16, width: u16, length: u64) -> (u64, u64) {
        let w = u128::from(width.max(1));
        let lo = |c: u128| ((c * u128::from(length)).div_ceil(w)) as u64;
        let c = u128::from(col);
        let hi = if c + 1 >= w { length + 1 } else { lo(c + 1) };
        (lo(c), hi)
    }
}

/// Everything the keys change.
#[derive(Clone, Debug)]
pub struct App {
    /// The position shown (kept in step with the timeline by the driver).
    pub cursor: u64,
    /// History length.
    pub length: u64,
    /// Focused pane.
    pub focus: Focus,
    /// Input mode.
    pub mode: Mode,
    /// Bookmarked positions.
    pub bookmarks: BTreeSet<u64>,
    /// The breakpoints and watchpoints `c`/`C` run to, numbered, with how they were typed.
    pub stops: StopList,
    /// The event class `{`/`}` move between.
    pub kind: EventClass,
    /// The event selected in the event pane (an index into the trace's events).
    pub event_sel: Option<usize>,
    /// Console lines scrolled back from the newest.
    pub console_scroll: usize,
    /// What the memory pane shows.
    pub mem: MemTarget,
    /// The last search.
    pub search: Option<String>,
    /// A one-line message in the status bar.
    pub status: Option<String>,
    /// An error shown over the panes.
    pub error: Option<ErrorNote>,
    /// Where replay diverged from the recording, once seen.
    pub divergence: Option<u64>,
    /// An operation is in progress (keys other than Esc and q wait).
    pub busy: bool,
    /// Where things were drawn.
    pub layout: Layout,
    /// The stretches of user mode (ring 3) found so far (`user_mode_scan.rs` fills them in
    /// the background), sorted and disjoint.
    pub user_spans: Vec<ttvm_replay::privilege::UserSpan>,
    /// Whether that search has covered the whole trace.
    pub user_scan_done: bool,
}

/// Read-only context the transitions look things up in.
#[derive(Clone, Copy, Debug)]
pub struct Ctx<'a> {
    /// The trace.
    pub info: &'a TraceInfo,
    /// The kernel's symbols.
    pub symbols: &'a Symbols,
}

impl App {
    /// The initial state for a trace, at icount 0.
    pub fn new(info: &TraceInfo) -> Self {
        let classes = info.classes();
        let kind = if classes.contains(&EventClass::Interrupt) {
            EventClass::Interrupt
        } else {
            classes.first().copied().unwrap_or(EventClass::Io)
        };
        Self {
            cursor: 0,
            length: info.length,
            focus: Focus::Disasm,
            mode: Mode::Normal,
            bookmarks: BTreeSet::new(),
            stops: StopList::default(),
            kind,
            event_sel: None,
            console_scroll: 0,
            mem: MemTarget::default(),
            search: None,
            status: info.note.clone(),
            error: None,
            divergence: None,
            busy: false,
            layout: Layout::default(),
            user_spans: Vec::new(),
            user_scan_done: false,
        }
    }

    // ----- reports from the driver -----

    /// The driver started an operation.
    pub fn started(&mut self) {
        self.busy = true;
    }

    /// The driver finished moving: the timeline is at `icount`.
    pub fn arrived(&mut self, icount: u64, note: Option<String>) {
        self.busy = false;
        self.cursor = icount;
        self.event_sel = None;
        self.console_scroll = 0;
        if note.is_some() {
            self.status = note;
        }
    }

    /// The operation failed at `icount`; `divergence` says whether replay diverged there.
    pub fn failed(&mut self, icount: u64, message: String, divergence: bool) {
        self.arrived(icount, None);
        if divergence {
            self.divergence = Some(self.divergence.map_or(icount, |d| d.min(icount)));
        }
        self.error = Some(ErrorNote { icount, message });
    }

    // ----- input -----

    /// Handles a key.
    pub fn on_key(&mut self, key: KeyEvent, ctx: Ctx<'_>) -> Action {
        if key.kind == KeyEventKind::Release {
            return Action::None;
        }
        let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
        if self.busy {
            return match key.code {
                KeyCode::Esc => Action::Cancel,
                KeyCode::Char('q') => Action::Quit,
                KeyCode::Char('c') if ctrl => Action::Quit,
                _ => {
                    self.status = Some("busy: Esc cancels".into());
                    Action::None
                }
            };
        }
        match self.mode.clone() {
            Mode::Help => {
                self.mode = Mode::Normal;
                Action::None
            }
            Mode::Prompt { kind, input } => self.prompt_key(kind, input, key, ctx),
            Mode::Normal => self.normal_key(key, ctx),
        }
    }

    fn normal_key(&mut self, key: KeyEvent, ctx: Ctx<'_>) -> Action {
        let m = key.modifiers;
        let step = if m.contains(KeyModifiers::CONTROL) {
            HUGE_STEP
        } else if m.contains(KeyModifiers::SHIFT) {
            BIG_STEP
        } else {
            1
        };
        match key.code {
            KeyCode::Char('c') if m.contains(KeyModifiers::CONTROL) => Action::Quit,
            KeyCode::Char('q') => Action::Quit,
            KeyCode::Left => self.back(step),
            KeyCode::Right => self.forward(step),
            KeyCode::Char('h') => self.back(1),
            KeyCode::Char('l') => self.forward(1),
            KeyCode::Char('H') => self.back(BIG_STEP),
            KeyCode::Char('L') => self.forward(BIG_STEP),
            KeyCode::Char('[') => self.jump(prev_event(ctx.info, self.cursor), "no earlier event"),
            KeyCode::Char(']') => self.jump(next_event(ctx.info, self.cursor), "no later event"),
            KeyCode::Char('{') => {
                let t = TraceInfo::prev_in(ctx.info.class_icounts(self.kind), self.cursor);
                self.jump(t, &format!("no earlier {} event", self.kind.name()))
            }
            KeyCode::Char('}') => {
                let t = TraceInfo::next_in(ctx.info.class_icounts(self.kind), self.cursor);
                self.jump(t, &format!("no later {} event", self.kind.name()))
            }
            KeyCode::Char('k') => {
                self.cycle_kind(ctx.info);
                Action::None
            }
            KeyCode::Char('g') => self.open_prompt(PromptKind::Goto),
            KeyCode::Char('b') => self.open_prompt(PromptKind::Breakpoint),
            KeyCode::Char('w') => self.open_prompt(PromptKind::Watch),
            KeyCode::Char('d') => self.open_prompt(PromptKind::Delete),
            KeyCode::Char('/') => self.open_prompt(PromptKind::Search),
            KeyCode::Char('a') => self.open_prompt(PromptKind::Memory),
            KeyCode::Char('G') | KeyCode::End => self.seek(self.length),
            KeyCode::Char('0') | KeyCode::Home => self.seek(0),
            KeyCode::Char('c') => self.run(Direction::Forward),
            KeyCode::Char('C') => self.run(Direction::Backward),
            KeyCode::Char('m') => {
                self.toggle_bookmark();
                Action::None
            }
            KeyCode::Char('u') => self.privilege_jump(true),
            KeyCode::Char('U') => self.privilege_jump(false),
            KeyCode::Char('\'') => self.bookmark_jump(true),
            KeyCode::Char('"') => self.bookmark_jump(false),
            KeyCode::Char('n') => self.search_again(ctx.info, true),
            KeyCode::Char('N') => self.search_again(ctx.info, false),
            KeyCode::Tab => {
                self.focus = self.focus.next();
                Action::None
            }
            KeyCode::BackTab => {
                self.focus = self.focus.prev();
                Action::None
            }
            KeyCode::Char('?') => {
                self.mode = Mode::Help;
                Action::None
            }
            KeyCode::Esc => {
                self.error = None;
                self.status = None;
                self.event_sel = None;
                Action::None
            }
            KeyCode::Up => self.scroll(ctx.info, -1),
            KeyCode::Down => self.scroll(ctx.info, 1),
            KeyCode::PageUp => self.scroll(ctx.info, -(PAGE_ROWS as i64)),
            KeyCode::PageDown => self.scroll(ctx.info, PAGE_ROWS as i64),
            KeyCode::Enter if self.focus == Focus::Events => self.open_selected_event(ctx.info),
            _ => Action::None,
        }
    }

    fn prompt_key(&mut self, kind: PromptKind, mut input: String, key: KeyEvent, ctx: Ctx<'_>) -> Action {
        match key.code {
            KeyCode::Esc => {
                self.mode = Mode::Normal;
                Action::None
            }
            KeyCode::Enter => {
                self.mode = Mode::Normal;
                self.submit(kind, input.trim(), ctx)
            }
            KeyCode::Backspace => {
                input.pop();
                self.mode = Mode::Prompt { kind, input };
                Action::None
            }
            KeyCode::Char('u') if key.modifiers.contains(KeyModifiers::CONTROL) => {
                self.mode = Mode::Prompt { kind, input: String::new() };
                Action::None
            }
            KeyCode::Char('c') if key.modifiers.contains(KeyModifiers::CONTROL) => {
                self.mode = Mode::Normal;
                Action::None
            }
            KeyCode::Char(c) => {
                input.push(c);
                self.mode = Mode::Prompt { kind, input };
                Action::None
            }
            _ => Action::None,
        }
    }

    fn submit(&mut self, kind: PromptKind, text: &str, ctx: Ctx<'_>) -> Action {
        match kind {
            PromptKind::Goto => match parse_icount(text, self.cursor, self.length) {
                Ok(t) => self.seek(t),
                Err(e) => self.say(e),
            },
            PromptKind::Breakpoint if text.is_empty() => self.remove_all(StopPointKind::Breakpoints),
            PromptKind::Breakpoint => match parse_address(text, ctx.symbols) {
                Ok(a) => self.add_stop(StopTarget::Breakpoint(a), text),
                Err(e) => self.say(e),
            },
            PromptKind::Watch if text.is_empty() => self.remove_all(StopPointKind::Watchpoints),
            PromptKind::Watch => match parse_watch(text, ctx.symbols) {
                Ok((w, typed)) => self.add_stop(StopTarget::Watchpoint(w), &typed),
                Err(e) => self.say(e),
            },
            PromptKind::Delete => match parse_ids(text) {
                Ok(Some(ids)) => self.delete(&ids),
                Ok(None) => {
                    let gone = self.stops.remove_all(None);
                    self.removed(gone)
                }
                Err(e) => self.say(e),
            },
            PromptKind::Search => {
                if text.is_empty() {
                    return Action::None;
                }
                self.search = Some(text.to_string());
                self.search_again(ctx.info, true)
            }
            PromptKind::Memory => match parse_mem_target(text, ctx.symbols) {
                Ok(t) => {
                    self.mem = t;
                    self.focus = Focus::Memory;
                    Action::RefreshMemory
                }
                Err(e) => self.say(e),
            },
        }
    }

    /// Handles a mouse event.
    pub fn on_mouse(&mut self, ev: MouseEvent, ctx: Ctx<'_>) -> Action {
        if self.busy || self.mode != Mode::Normal {
            return Action::None;
        }
        let at = Position::new(ev.column, ev.row);
        let pane = self.layout.panes.iter().find(|(_, r)| r.contains(at)).map(|(f, _)| *f);
        match ev.kind {
            MouseEventKind::Down(MouseButton::Left) => {
                if self.layout.timeline.contains(at) {
                    if let Some(t) = self.layout.icount_at(ev.column, self.length) {
                        return self.seek(t);
                    }
                }
                if let Some(f) = pane {
                    self.focus = f;
                }
                Action::None
            }
            MouseEventKind::ScrollUp | MouseEventKind::ScrollDown => {
                let Some(f) = pane else { return Action::None };
                self.focus = f;
                self.scroll(ctx.info, if ev.kind == MouseEventKind::ScrollUp { -1 } else { 1 })
            }
            _ => Action::None,
        }
    }

    // ----- commands -----

    fn say(&mut self, msg: String) -> Action {
        self.status = Some(msg);
        Action::None
    }

    fn open_prompt(&mut self, kind: PromptKind) -> Action {
        let input = match kind {
            PromptKind::Search => self.search.clone().unwrap_or_default(),
            _ => String::new(),
        };
        self.mode = Mode::Prompt { kind, input };
        Action::None
    }

    fn seek(&mut self, target: u64) -> Action {
        if target == self.cursor {
            return self.say(format!("already at icount {target}"));
        }
        self.status = None;
        Action::Seek(target.min(self.length))
    }

    fn back(&mut self, n: u64) -> Action {
        if self.cursor == 0 {
            return self.say("at the start of the history".into());
        }
        self.seek(self.cursor.saturating_sub(n))
    }

    fn forward(&mut self, n: u64) -> Action {
        if self.cursor >= self.length {
            return self.say("at the end of the history".into());
        }
        self.seek(self.cursor.saturating_add(n).min(self.length))
    }

    fn jump(&mut self, target: Option<u64>, none: &str) -> Action {
        match target {
            Some(t) => self.seek(t),
            None => self.say(none.to_string()),
        }
    }

    fn run(&mut self, direction: Direction) -> Action {
        if self.stops.is_empty() {
            return self.say("no breakpoint or watchpoint: b sets a breakpoint, w a watchpoint".into());
        }
        self.status = None;
        Action::Run(direction)
    }

    fn add_stop(&mut self, target: StopTarget, text: &str) -> Action {
        match self.stops.add(target, text) {
            Ok(p) => {
                self.status = Some(format!("{} set: c runs forward to the next stop, C backward", p.describe()));
                Action::AddStop(target)
            }
            Err(e) => self.say(e),
        }
    }

    fn remove_all(&mut self, kind: StopPointKind) -> Action {
        let gone = self.stops.remove_all(Some(kind));
        self.removed(gone)
    }

    fn delete(&mut self, ids: &[u32]) -> Action {
        if let Some(missing) = ids.iter().find(|&&id| !self.stops.iter().any(|p| p.id == id)) {
            return self.say(format!("no breakpoint or watchpoint numbered {missing}"));
        }
        let gone = ids.iter().filter_map(|&id| self.stops.remove(id)).collect();
        self.removed(gone)
    }

    fn removed(&mut self, gone: Vec<StopPoint>) -> Action {
        self.status = Some(match gone.as_slice() {
            [] => "nothing to delete".into(),
            [one] => format!("deleted {}", one.describe()),
            many => format!("deleted {} breakpoints and watchpoints", many.len()),
        });
        if gone.is_empty() {
            return Action::None;
        }
        Action::RemoveStops(gone.into_iter().map(|p| p.target).collect())
    }

    fn cycle_kind(&mut self, info: &TraceInfo) {
        let classes = info.classes();
        if classes.is_empty() {
            self.status = Some("the trace has no events".into());
            return;
        }
        let i = classes.iter().position(|&c| c == self.kind).map_or(0, |i| (i + 1) % classes.len());
        self.kind = classes[i];
        self.status = Some(format!("{{ }} now move between {} events", self.kind.name()));
    }

    fn toggle_bookmark(&mut self) {
        if self.bookmarks.remove(&self.cursor) {
            self.status = Some(format!("bookmark at icount {} removed", self.cursor));
        } else {
            self.bookmarks.insert(self.cursor);
            self.status = Some(format!("bookmarked icount {} (' jumps between bookmarks)", self.cursor));
        }
    }

    fn bookmark_jump(&mut self, forward: bool) -> Action {
        let target = if forward {
            self.bookmarks.range(self.cursor + 1..).next().or_else(|| self.bookmarks.iter().next())
        } else {
            self.bookmarks.range(..self.cursor).next_back().or_else(|| self.bookmarks.iter().next_back())
        };
        match target.copied() {
            Some(t) => self.seek(t),
            None => self.say("no bookmarks: m sets one".into()),
        }
    }

    /// `u`/`U`: to the next/previous switch between user mode and the kernel.
    fn privilege_jump(&mut self, forward: bool) -> Action {
        use ttvm_replay::privilege::{next_transition, prev_transition};
        let target = if forward {
            next_transition(&self.user_spans, self.cursor)
        } else {
            prev_transition(&self.user_spans, self.cursor)
        };
        match target {
            Some(t) => self.seek(t),
            None if !self.user_scan_done => self.say("still looking for user mode in the trace…".into()),
            None if self.user_spans.is_empty() => self.say("the guest never ran in user mode".into()),
            None => self.say(format!(
                "no {} switch between user mode and the kernel",
                if forward { "later" } else { "earlier" }
            )),
        }
    }

    fn search_again(&mut self, info: &TraceInfo, forward: bool) -> Action {
        let Some(needle) = self.search.clone() else {
            return self.say("no search yet: / searches the serial output".into());
        };
        let hits = info.search(&needle);
        if hits.is_empty() {
            return self.say(format!("\"{needle}\" is not in the serial output"));
        }
        let at = |k: usize| info.lines[hits[k]].printed_at;
        let pick = if forward {
            (0..hits.len()).find(|&k| at(k) > self.cursor).unwrap_or(0)
        } else {
            (0..hits.len()).rev().find(|&k| at(k) < self.cursor).unwrap_or(hits.len() - 1)
        };
        let line = hits[pick];
        let target = info.lines[line].printed_at;
        let msg = format!("match {}/{} (console line {}): {}", pick + 1, hits.len(), line + 1, info.line_text(line));
        if target == self.cursor {
            return self.say(msg);
        }
        let action = self.seek(target);
        self.status = Some(msg);
        action
    }

    fn scroll(&mut self, info: &TraceInfo, delta: i64) -> Action {
        match self.focus {
            Focus::Events => {
                if info.events.is_empty() {
                    return Action::None;
                }
                let base = self.event_sel.unwrap_or_else(|| info.first_event_at(self.cursor));
                let last = info.events.len() as i64 - 1;
                let sel = (base as i64 + delta).clamp(0, last) as usize;
                self.event_sel = Some(sel);
                self.kind = info.events[sel].kind.class();
                Action::None
            }
            Focus::Console => {
                let lines = info.lines.len();
                self.console_scroll = (self.console_scroll as i64 - delta).clamp(0, lines as i64) as usize;
                Action::None
            }
            Focus::Memory => {
                self.mem.offset = self.mem.offset.wrapping_add_signed(delta * MEM_ROW);
                Action::RefreshMemory
            }
            Focus::Disasm | Focus::Registers => Action::None,
        }
    }

    fn open_selected_event(&mut self, info: &TraceInfo) -> Action {
        match self.event_sel.and_then(|k| info.events.get(k)) {
            Some(e) => {
                self.kind = e.kind.class();
                let t = e.icount;
                self.seek(t)
            }
            None => self.say("select an event with ↑/↓ first".into()),
        }
    }
}

fn next_event(info: &TraceInfo, cursor: u64) -> Option<u64> {
    info.events.get(info.events.partition_point(|e| e.icount <= cursor)).map(|e| e.icount)
}

fn prev_event(info: &TraceInfo, cursor: u64) -> Option<u64> {
    let n = info.events.partition_point(|e| e.icount < cursor);
    n.checked_sub(1).map(|k| info.events[k].icount)
}
