//! Drawing the network view: the lanes on top ([`super::lanes`]), the frames around the
//! selected VM and the cut below ([`super::panes`]), a status line and the key bar.

use ratatui::layout::{Alignment, Constraint, Direction, Layout as Split, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Paragraph, Wrap};
use ratatui::Frame;
use ttvm_replay::network::manifest::NetworkManifestV1;

use super::app::{NetApp, NetLayout, NetMode};
use super::{lanes, panes};
use crate::ui::style;

/// Smallest terminal the view works in.
pub const MIN_WIDTH: u16 = 80;
/// Smallest terminal height the view works in.
pub const MIN_HEIGHT: u16 = 20;

/// What a frame shows.
#[derive(Debug)]
pub struct NetModel<'a> {
    /// UI state.
    pub app: &'a NetApp,
    /// The recording's manifest.
    pub m: &'a NetworkManifestV1,
    /// The directory, for the title.
    pub title: &'a str,
}

/// Where an icount falls on a lane of `width` columns showing `window`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Col {
    /// Before the window.
    Left,
    /// In this column.
    At(u16),
    /// After the window.
    Right,
}

impl Col {
    /// The column, with icounts outside the window pinned to the nearer edge.
    pub fn clamped(self, width: u16) -> u16 {
        match self {
            Col::Left => 0,
            Col::At(c) => c,
            Col::Right => width.saturating_sub(1),
        }
    }
}

/// The column of `t`: floor((t - lo) · (width - 1) / (hi - lo)), so `lo` is the first
/// column and `hi` the last (one scale for every VM: the same column is the same icount).
pub fn column_of(window: (u64, u64), width: u16, t: u64) -> Col {
    let (lo, hi) = window;
    if t < lo {
        return Col::Left;
    }
    if t > hi {
        return Col::Right;
    }
    let span = u128::from((hi - lo).max(1));
    let last = u128::from(width.saturating_sub(1));
    Col::At((u128::from(t - lo) * last / span) as u16)
}

/// The first icount column `col` stands for (the inverse of [`column_of`]).
pub fn icount_at(window: (u64, u64), width: u16, col: u16) -> u64 {
    let (lo, hi) = window;
    let last = u128::from(width.saturating_sub(1).max(1));
    let c = u128::from(col.min(width.saturating_sub(1)));
    lo + (c * u128::from(hi - lo)).div_ceil(last) as u64
}

/// Draws a frame and returns where the lanes went.
pub fn render(frame: &mut Frame<'_>, m: &NetModel<'_>) -> NetLayout {
    let area = frame.area();
    if area.width < MIN_WIDTH || area.height < MIN_HEIGHT {
        let text = format!(
            "ttvm tui: the terminal is too small ({}x{}).\nThe network view needs at least {MIN_WIDTH}x{MIN_HEIGHT}: make the window larger, or press q to quit.",
            area.width, area.height
        );
        let p = Paragraph::new(text).alignment(Alignment::Center).wrap(Wrap { trim: true }).style(style::warning());
        frame.render_widget(p, area);
        return NetLayout::default();
    }
    // The lanes get what they ask for, leaving the panes at least 7 rows.
    let lanes_height = lanes::height(m.m.vms.len(), area.height.saturating_sub(9));
    let rows = Split::default()
        .direction(Direction::Vertical)
        .constraints([
            Constraint::Length(lanes_height),
            Constraint::Min(7),
            Constraint::Length(1),
            Constraint::Length(1),
        ])
        .split(area);
    let bottom = Split::default()
        .direction(Direction::Horizontal)
        .constraints([Constraint::Percentage(55), Constraint::Percentage(45)])
        .split(rows[1]);
    let layout = NetLayout { lanes: lanes::render(frame, rows[0], m) };
    panes::frames(frame, bottom[0], m);
    panes::cut(frame, bottom[1], m);
    status_line(frame, rows[2], m.app);
    key_bar(frame, rows[3], m.app);
    if m.app.mode == NetMode::Help {
        crate::ui::help::keys_overlay(frame, area, KEYS, 24, " ttvm tui: network view keys ");
    }
    layout
}

/// Every key of the network view, for the overlay (and the documentation).
pub const KEYS: &[(&str, &str)] = &[
    ("← / →  (h / l)", "move the selected VM one step; the others move to the consistent cut"),
    ("Shift+← / →  (H / L)", "1,000 steps back / forward"),
    ("Ctrl+← / →", "1,000,000 steps back / forward"),
    ("[ / ]", "the selected VM's previous / next frame sent or received"),
    ("g", "go to an icount of the selected VM (1234, 0x4d2, 50%, +1000, -5k)"),
    ("Home / End (G)", "start / end of the selected VM's history"),
    ("Tab / Shift+Tab, ↓ / ↑ (j / k)", "select the next / previous VM (the cut stays)"),
    ("0 .. 9", "select VM 0 .. 9"),
    ("+ / -", "zoom in / out around the selected cursor (one scale for all VMs)"),
    ("f", "show only where the frames are; again: the whole run"),
    ("mouse", "click a lane: select that VM and move it there"),
    ("Enter", "open the selected VM's trace at its cursor (q there comes back here)"),
    ("Esc", "dismiss the message"),
    ("?", "this help"),
    ("q", "quit"),
];

fn status_line(frame: &mut Frame<'_>, area: Rect, app: &NetApp) {
    let line = match &app.status {
        Some(s) => Line::from(Span::styled(format!(" {s}"), style::warning())),
        None => Line::from(""),
    };
    frame.render_widget(Paragraph::new(line), area);
}

fn key_bar(frame: &mut Frame<'_>, area: Rect, app: &NetApp) {
    let line = match &app.mode {
        NetMode::Goto(input) => {
            style::prompt_line(format!(" VM {} go to icount (1234, 0x4d2, 50%, +1000, -5k): ", app.selected), input)
        }
        _ => {
            let hints = [
                ("?", "help"),
                ("q", "quit"),
                ("←→", "step"),
                ("⇧/^", "×1k/×1M"),
                ("[]", "frame"),
                ("g", "goto"),
                ("Tab/0-9", "VM"),
                ("+-", "zoom"),
                ("f", "frames"),
                ("Enter", "open VM"),
            ];
            style::key_hints(&hints)
        }
    };
    frame.render_widget(Paragraph::new(line), area);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_and_icounts_agree() {
        let w = (100, 1100);
        assert_eq!(column_of(w, 51, 99), Col::Left);
        assert_eq!(column_of(w, 51, 1101), Col::Right);
        assert_eq!(column_of(w, 51, 100), Col::At(0));
        assert_eq!(column_of(w, 51, 1100), Col::At(50));
        assert_eq!(column_of(w, 51, 600), Col::At(25));
        for c in 0..51 {
            let t = icount_at(w, 51, c);
            assert_eq!(column_of(w, 51, t), Col::At(c), "column {c} starts at {t}");
            if t > 100 {
                assert_eq!(column_of(w, 51, t - 1), Col::At(c - 1));
            }
        }
    }
}
