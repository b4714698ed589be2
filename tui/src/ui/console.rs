//! The serial console as it was at the cursor: output printed after the cursor is not shown.

use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;
use ratatui::Frame;

use super::{pane_block, style, Model};
use crate::trace_info::printable;

/// Splits `text` so every occurrence of `needle` is highlighted.
fn highlight(text: String, needle: Option<&str>) -> Line<'static> {
    let Some(n) = needle.filter(|n| !n.is_empty() && text.contains(*n)) else {
        return Line::from(text);
    };
    let mut spans = Vec::new();
    let mut rest = text.as_str();
    while let Some(i) = rest.find(n) {
        spans.push(Span::raw(rest[..i].to_string()));
        spans.push(Span::styled(n.to_string(), style::matched()));
        rest = &rest[i + n.len()..];
    }
    spans.push(Span::raw(rest.to_string()));
    Line::from(spans)
}

/// Draws the pane.
pub fn render(frame: &mut Frame<'_>, area: Rect, m: &Model<'_>, focused: bool) {
    let (app, info) = (m.app, m.info);
    let len = info.serial_len_at(app.cursor);
    // Lines that had started by the cursor; the last may be partly printed.
    let started = info.lines.partition_point(|l| l.start < len);
    let newline_last = len > 0 && info.serial.get(len - 1) == Some(&b'\n');
    let title = format!(
        " Console · {} of {} lines by the cursor{} ",
        started,
        info.lines.len(),
        if app.console_scroll > 0 { format!(" · scrolled back {}", app.console_scroll) } else { String::new() }
    );
    let block = pane_block(title, focused);
    let inner = block.inner(area);
    let h = usize::from(inner.height);
    let end = started.saturating_sub(app.console_scroll);
    // A fresh empty line after a completed one shows where the next output would go.
    let prompt_row = usize::from(newline_last && app.console_scroll == 0);
    let first = end.saturating_sub(h.saturating_sub(prompt_row));
    let needle = app.search.as_deref();
    let mut lines: Vec<Line<'static>> = (first..end)
        .map(|k| {
            let l = info.lines[k];
            highlight(printable(&info.serial[l.start..l.end.min(len)]), needle)
        })
        .collect();
    if prompt_row == 1 || (started == 0 && app.console_scroll == 0) {
        lines.push(Line::from(Span::styled("▏", style::dim())));
    }
    frame.render_widget(Paragraph::new(lines).block(block), area);
}
