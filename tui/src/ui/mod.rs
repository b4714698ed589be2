//! Drawing. Each pane is a function of the state it shows (one file per pane); this module
//! lays them out and returns where they went, for mouse hit-testing.

mod console;
mod disasm;
mod events;
pub mod help;
mod memory;
mod popup;
mod registers;
mod stops;
pub mod style;
mod timeline;

use ratatui::layout::{Alignment, Constraint, Direction, Layout as Split, Rect};
use ratatui::widgets::{Block, BorderType, Borders, Paragraph, Wrap};
use ratatui::Frame;

use crate::app::{App, Focus, Layout};
use crate::driver::Progress;
use crate::trace_info::TraceInfo;
use crate::view::View;

/// Smallest terminal the layout works in.
pub const MIN_WIDTH: u16 = 80;
/// Smallest terminal height the layout works in.
pub const MIN_HEIGHT: u16 = 24;
/// Rows of the timeline bar, borders included.
pub const TIMELINE_HEIGHT: u16 = 10;

/// What a frame shows.
#[derive(Debug)]
pub struct Model<'a> {
    /// UI state.
    pub app: &'a App,
    /// The trace.
    pub info: &'a TraceInfo,
    /// The machine at the cursor.
    pub view: &'a View,
    /// The operation in progress.
    pub progress: Option<Progress>,
}

/// A pane's frame, highlighted when focused.
pub(crate) fn pane_block(title: String, focused: bool) -> Block<'static> {
    Block::default()
        .borders(Borders::ALL)
        .border_type(if focused { BorderType::Thick } else { BorderType::Plain })
        .border_style(if focused { style::focused_border() } else { style::border() })
        .title(title)
}

/// Draws a frame and returns where everything went.
pub fn render(frame: &mut Frame<'_>, m: &Model<'_>) -> Layout {
    let area = frame.area();
    if area.width < MIN_WIDTH || area.height < MIN_HEIGHT {
        too_small(frame, area);
        return Layout::default();
    }
    let rows = Split::default()
        .direction(Direction::Vertical)
        .constraints([
            Constraint::Length(TIMELINE_HEIGHT),
            Constraint::Min(8),
            Constraint::Percentage(32),
            Constraint::Length(stops::height(&m.app.stops)),
            Constraint::Length(1),
            Constraint::Length(1),
        ])
        .split(area);
    let reg_width = if area.width >= 140 { 46 } else { 25 };
    let middle = Split::default()
        .direction(Direction::Horizontal)
        .constraints([Constraint::Length(reg_width), Constraint::Min(30), Constraint::Percentage(30)])
        .split(rows[1]);
    let bottom = Split::default()
        .direction(Direction::Horizontal)
        .constraints([Constraint::Percentage(50), Constraint::Percentage(50)])
        .split(rows[2]);

    let focus = m.app.focus;
    let lanes = timeline::render(frame, rows[0], m);
    registers::render(frame, middle[0], m.view, focus == Focus::Registers);
    disasm::render(frame, middle[1], m, focus == Focus::Disasm);
    events::render(frame, middle[2], m, focus == Focus::Events);
    console::render(frame, bottom[0], m, focus == Focus::Console);
    memory::render(frame, bottom[1], m, focus == Focus::Memory);
    stops::render(frame, rows[3], &m.app.stops);
    help::status_line(frame, rows[4], m);
    help::key_bar(frame, rows[5], m.app);

    let body = Rect { height: rows[1].height + rows[2].height, ..rows[1] };
    if let Some(p) = &m.progress {
        popup::progress(frame, body, p);
    } else if let Some(e) = &m.app.error {
        popup::error(frame, body, e);
    }
    if m.app.mode == crate::app::Mode::Help {
        help::overlay(frame, area);
    }
    Layout {
        timeline: lanes,
        panes: vec![
            (Focus::Registers, middle[0]),
            (Focus::Disasm, middle[1]),
            (Focus::Events, middle[2]),
            (Focus::Console, bottom[0]),
            (Focus::Memory, bottom[1]),
        ],
    }
}

fn too_small(frame: &mut Frame<'_>, area: Rect) {
    let text = format!(
        "ttvm tui: the terminal is too small ({}x{}).\nIt needs at least {MIN_WIDTH}x{MIN_HEIGHT}: make the window larger, or press q to quit.",
        area.width, area.height
    );
    let p = Paragraph::new(text).alignment(Alignment::Center).wrap(Wrap { trim: true }).style(style::warning());
    let h = 3.min(area.height);
    let y = area.y + area.height.saturating_sub(h) / 2;
    frame.render_widget(p, Rect { y, height: h, ..area });
}
