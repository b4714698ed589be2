//! Boxes drawn over the panes: progress of a long operation, and errors.

use ratatui::layout::Rect;
use ratatui::style::{Color, Style};
use ratatui::text::Line;
use ratatui::widgets::{Block, Clear, Gauge, Paragraph, Wrap};
use ratatui::Frame;

use super::style;
use crate::app::ErrorNote;
use crate::driver::Progress;

fn centred(area: Rect, width: u16, height: u16) -> Rect {
    let (w, h) = (width.min(area.width), height.min(area.height));
    Rect { x: area.x + (area.width - w) / 2, y: area.y + (area.height - h) / 2, width: w, height: h }
}

/// The progress box of a long operation.
pub fn progress(frame: &mut Frame<'_>, area: Rect, p: &Progress) {
    let r = centred(area, 70, 5);
    frame.render_widget(Clear, r);
    let block = Block::bordered().title(" working · Esc cancels ").border_style(style::warning());
    let inner = block.inner(r);
    frame.render_widget(block, r);
    if inner.height < 2 {
        return;
    }
    frame.render_widget(Paragraph::new(format!("{} · at icount {}", p.what, p.at)), Rect { height: 1, ..inner });
    let gauge = Gauge::default()
        .gauge_style(Style::default().fg(Color::Yellow).bg(Color::DarkGray))
        .ratio(p.fraction.clamp(0.0, 1.0))
        .label(format!("{:.0}%", p.fraction * 100.0));
    frame.render_widget(gauge, Rect { y: inner.y + 1, height: 1, ..inner });
}

/// An error, with where it happened.
pub fn error(frame: &mut Frame<'_>, area: Rect, e: &ErrorNote) {
    let text: Vec<Line<'static>> = std::iter::once(Line::styled(format!("at icount {}:", e.icount), style::error()))
        .chain(e.message.lines().map(|l| Line::from(l.to_string())))
        .chain([
            Line::from(""),
            Line::styled("Esc dismisses · the history before this point can still be explored", style::dim()),
        ])
        .collect();
    let height = (text.len() as u16 + 2).min(area.height);
    let r = centred(area, area.width.saturating_sub(8).min(110), height);
    frame.render_widget(Clear, r);
    let block = Block::bordered().title(" replay error ").border_style(style::error());
    frame.render_widget(Paragraph::new(text).wrap(Wrap { trim: false }).block(block), r);
}
