//! The code pane: instructions around RIP with function labels and source lines.

use ratatui::layout::Rect;
use ratatui::style::{Color, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;
use ratatui::Frame;

use super::{pane_block, style, Model};

/// Instruction bytes shown before they are elided.
const MAX_BYTES: usize = 7;

/// Draws the pane.
pub fn render(frame: &mut Frame<'_>, area: Rect, m: &Model<'_>, focused: bool) {
    let code = &m.view.code;
    let mut title = String::from(" Disassembly ");
    if let Some(f) = &code.function {
        title.push_str(&format!("· {f} "));
    }
    if let Some(s) = code.source.first() {
        title.push_str(&format!("· {s} "));
    }
    let block = pane_block(title, focused);
    let inner = block.inner(area);
    let mut lines: Vec<Line<'static>> = Vec::new();
    let mut current_row = 0;
    for (i, l) in code.lines.iter().enumerate() {
        if let Some(label) = &l.label {
            lines.push(Line::from(Span::styled(format!("<{label}>:"), style::label())));
        }
        // Source lines between the instructions, as `objdump -dl` prints them.
        if let Some(src) = &l.source {
            lines.push(Line::from(Span::styled(format!("   {src}"), Style::default().fg(Color::Green))));
        }
        if Some(i) == code.current {
            current_row = lines.len();
        }
        let mark = match (Some(i) == code.current, m.app.stops.has_breakpoint(l.addr)) {
            (true, _) => "▶",
            (false, true) => "●",
            _ => " ",
        };
        let mut bytes: String =
            l.bytes.iter().take(MAX_BYTES).map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(" ");
        if l.bytes.len() > MAX_BYTES {
            bytes.push('…');
        }
        let mut spans = vec![
            Span::styled(mark.to_string(), Style::default().fg(Color::Red)),
            Span::styled(format!("{:016x}  ", l.addr), style::dim()),
        ];
        // Raw bytes only when there is room: the instruction text matters more.
        if inner.width >= 90 {
            spans.push(Span::styled(format!("{bytes:<21}  "), style::dim()));
        }
        spans.push(Span::raw(l.text.clone()));
        let mut line = Line::from(spans);
        if Some(i) == code.current {
            line = line.style(style::current());
        }
        lines.push(line);
    }
    if code.lines.is_empty() {
        lines.push(Line::from(Span::styled(
            format!("(the code at RIP {:#x} is not mapped)", m.view.regs.regs.rip),
            style::warning(),
        )));
    }
    // Keep RIP a third of the way down, so what comes next is in view.
    let skip = current_row.saturating_sub(usize::from(inner.height) / 3);
    let shown: Vec<Line<'static>> = lines.into_iter().skip(skip).collect();
    frame.render_widget(Paragraph::new(shown).block(block), area);
}
