//! The status line, the key bar (or the prompt being typed) and the `?` overlay.

use ratatui::layout::Rect;
use ratatui::style::{Color, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Clear, Paragraph};
use ratatui::Frame;

use super::{style, Model};
use crate::app::{App, Mode};

/// Every key, for the overlay (and the documentation).
pub const KEYS: &[(&str, &str)] = &[
    ("← / →  (h / l)", "step one instruction back / forward"),
    ("Shift+← / →  (H / L)", "1,000 steps back / forward"),
    ("Ctrl+← / →", "1,000,000 steps back / forward"),
    ("[ / ]", "previous / next event"),
    ("{ / }", "previous / next event of the selected kind"),
    ("k", "select the next event kind (also: select an event in the Events pane)"),
    ("g", "go to an icount (1234, 0x4d2, 50%, +1000, -5k)"),
    ("0 / G  (Home / End)", "start / end of the history"),
    ("b", "add a breakpoint: address or symbol (empty: delete all)"),
    ("w", "add a watchpoint: [read|access] ADDRESS [LEN] (default write)"),
    ("d", "delete breakpoints / watchpoints by number (1 3, or all)"),
    ("c / C", "run forward / backward to the breakpoints and watchpoints"),
    ("m", "toggle a bookmark at the cursor"),
    ("' / \"", "jump to the next / previous bookmark"),
    ("u / U", "jump to the next / previous switch between user mode and the kernel (the user lane)"),
    ("/", "search the serial output; jump to when the line was printed"),
    ("n / N", "next / previous match"),
    ("a", "memory pane address (register, address, symbol; rsp+0x10)"),
    ("Tab / Shift+Tab", "focus the next / previous pane"),
    ("↑ ↓ PgUp PgDn", "scroll the focused pane (Events: select; Enter jumps)"),
    ("mouse", "click the timeline to jump there; click a pane to focus it"),
    ("Esc", "cancel a long operation; dismiss a message"),
    ("?", "this help"),
    ("q", "quit"),
];

/// The line above the key bar: the latest message first (it is what the user just asked
/// about), then where RIP is.
pub fn status_line(frame: &mut Frame<'_>, area: Rect, m: &Model<'_>) {
    let code = &m.view.code;
    let mut spans = Vec::new();
    if let Some(s) = &m.app.status {
        spans.push(Span::styled(format!(" {s} │"), style::warning()));
    }
    spans.push(Span::styled(format!(" rip {:#x}", m.view.regs.regs.rip), style::label()));
    if let Some(f) = &code.function {
        spans.push(Span::raw(format!(" {f}")));
    }
    if let Some(s) = code.source.first() {
        spans.push(Span::styled(format!(" {s}"), Style::default().fg(Color::Green)));
    }
    if code.source.len() > 1 {
        let outer = code.source.last().map(String::as_str).unwrap_or_default();
        spans.push(Span::styled(format!(" (inlined into {outer})"), Style::default().fg(Color::Green)));
    }
    frame.render_widget(Paragraph::new(Line::from(spans)), area);
}

/// The bottom line: key hints, or the prompt being typed.
pub fn key_bar(frame: &mut Frame<'_>, area: Rect, app: &App) {
    let line = match &app.mode {
        Mode::Prompt { kind, input } => style::prompt_line(format!(" {}: ", kind.label()), input),
        _ => {
            // Help and quit first: on a narrow terminal the end of the bar is cut off.
            let hints = [
                ("?", "help"),
                ("q", "quit"),
                ("←→", "step"),
                ("⇧/^", "×1k/×1M"),
                ("[]", "event"),
                ("{}", "kind"),
                ("g", "goto"),
                ("0/G", "start/end"),
                ("b/w", "break/watch"),
                ("c/C", "run"),
                ("m/'", "mark"),
                ("/", "search"),
                ("a", "mem"),
                ("Tab", "focus"),
            ];
            style::key_hints(&hints)
        }
    };
    frame.render_widget(Paragraph::new(line), area);
}

/// The `?` overlay.
pub fn overlay(frame: &mut Frame<'_>, area: Rect) {
    keys_overlay(frame, area, KEYS, 22, " ttvm tui keys ");
}

/// A centred box listing `keys` (key column `key_width` wide) under `title`, closed by any
/// key; both views' `?`.
pub fn keys_overlay(frame: &mut Frame<'_>, area: Rect, keys: &[(&str, &str)], key_width: usize, title: &str) {
    // The key column, the longest description and the borders.
    let longest = keys.iter().map(|(_, what)| what.chars().count()).max().unwrap_or(0);
    let width = ((1 + key_width + longest + 3) as u16).min(area.width);
    let height = (keys.len() as u16 + 4).min(area.height);
    let r = Rect { x: area.x + (area.width - width) / 2, y: area.y + (area.height - height) / 2, width, height };
    let mut lines: Vec<Line<'static>> = keys
        .iter()
        .map(|(k, what)| {
            Line::from(vec![Span::styled(format!(" {k:<key_width$}"), style::label()), Span::raw(what.to_string())])
        })
        .collect();
    lines.push(Line::from(""));
    lines.push(Line::from(Span::styled(" any key closes this help", style::dim())));
    frame.render_widget(Clear, r);
    frame.render_widget(
        Paragraph::new(lines).block(Block::bordered().title(title.to_string()).border_style(style::focused_border())),
        r,
    );
}
