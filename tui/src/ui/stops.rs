//! The line listing the breakpoints and watchpoints, numbered for `d`; drawn only when
//! there are any.

use ratatui::layout::Rect;
use ratatui::style::{Color, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;
use ratatui::Frame;

use super::style;
use crate::stops::{StopList, StopPoint, StopTarget};

/// Rows the list takes: one when there is something to list.
pub fn height(stops: &StopList) -> u16 {
    u16::from(!stops.is_empty())
}

/// `1 ● kmain 0x1001f0`, `3 ◆ write TICKS 0x104000+8`; an address typed as such is not
/// repeated.
fn entry(p: &StopPoint) -> (String, Color) {
    let typed_address = p.typed_as_address();
    match p.target {
        StopTarget::Breakpoint(a) if typed_address => (format!("{} ● {a:#x}", p.id), Color::Red),
        StopTarget::Breakpoint(a) => (format!("{} ● {} {a:#x}", p.id, p.text), Color::Red),
        StopTarget::Watchpoint(w) if typed_address => (format!("{} ◆ {w}", p.id), Color::LightMagenta),
        StopTarget::Watchpoint(w) => {
            (format!("{} ◆ {} {} {:#x}+{}", p.id, w.kind.name(), p.text, w.addr, w.len), Color::LightMagenta)
        }
    }
}

/// Draws the list.
pub fn render(frame: &mut Frame<'_>, area: Rect, stops: &StopList) {
    if area.height == 0 || stops.is_empty() {
        return;
    }
    let mut spans = vec![Span::styled(" stops:", style::label())];
    for p in stops.iter() {
        let (text, color) = entry(p);
        spans.push(Span::styled(format!("  {text}"), Style::default().fg(color)));
    }
    spans.push(Span::styled("  · c/C run to them, d deletes", style::dim()));
    frame.render_widget(Paragraph::new(Line::from(spans)), area);
}
