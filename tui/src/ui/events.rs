//! The event list around the cursor: what already happened above the cursor line, what the
//! next steps will do below it (an event at icount N happens during step N, after position N).

use ratatui::layout::Rect;
use ratatui::style::{Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;
use ratatui::Frame;

use super::{pane_block, style, Model};

/// Draws the pane.
pub fn render(frame: &mut Frame<'_>, area: Rect, m: &Model<'_>, focused: bool) {
    let (app, info) = (m.app, m.info);
    let title = format!(" Events · {{ }} jump to {} ", app.kind.name());
    let block = pane_block(title, focused);
    let inner = block.inner(area);
    let h = usize::from(inner.height);
    let split = info.first_event_at(app.cursor);
    // Centre on the selection when there is one, on the cursor otherwise.
    let centre = app.event_sel.unwrap_or(split);
    let before = h.saturating_sub(1) / 2;
    let first = centre.saturating_sub(before);
    let mut lines: Vec<Line<'static>> = Vec::with_capacity(h);
    let mut k = first;
    while lines.len() < h {
        if k == split {
            lines.push(Line::from(Span::styled(format!("──▶ icount {} ──────────", app.cursor), style::warning())));
            if lines.len() >= h {
                break;
            }
        }
        let Some(e) = info.events.get(k) else {
            if k >= split {
                break;
            }
            k += 1;
            continue;
        };
        let mut st = Style::default().fg(style::class_color(e.kind.class()));
        if k >= split {
            st = st.add_modifier(Modifier::DIM);
        }
        if app.event_sel == Some(k) {
            st = style::current();
        }
        lines.push(Line::from(vec![
            Span::styled(format!("{:>10} ", e.icount), style::dim()),
            Span::styled(e.kind.describe(), st),
        ]));
        k += 1;
    }
    if info.events.is_empty() {
        lines = vec![Line::from(Span::styled("(the trace has no events)", style::dim()))];
    }
    frame.render_widget(Paragraph::new(lines).block(block), area);
}
