//! The lanes: one row per VM, stacked, on one icount scale (column c is the same icount in
//! every VM; a VM shorter than the longest ends early, at its ■), each with its cursor at
//! the cut; between the rows, every frame in the window as an arrow from its send (the
//! sender's column) to its reception (the receiver's column). Frames in flight at the cut
//! are drawn last, dashed and in their own colour, so they stay visible.
//!
//! An arrow leaves the sender's lane vertically, turns in the middle of the gap below (or
//! above) it, runs to the receiver's column, and ends in ▼/▲ next to the receiver's lane;
//! a frame never received ends in ×, under its send.

use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::Block;
use ratatui::Frame;

use super::ui::{column_of, Col, NetModel};
use crate::ui::style;

/// Columns of the VM labels.
pub const LABEL_WIDTH: u16 = 12;
/// Rows between two lanes when there is room (one for each leg of an arrow).
pub const GAP: u16 = 3;

/// Rows the lanes' box wants for `vms` lanes within `room` rows: borders, lanes, gaps of
/// [`GAP`] rows (1 when that does not fit), the axis.
pub fn height(vms: usize, room: u16) -> u16 {
    let n = vms.max(1) as u16;
    let want = |gap: u16| 2 + n + (n - 1) * gap + 1;
    if want(GAP) <= room {
        want(GAP)
    } else {
        want(1).min(room.max(4))
    }
}

/// The style of received frames.
pub fn frame_style() -> Style {
    Style::default().fg(Color::LightBlue)
}

/// The style of frames in flight at the cut.
pub fn in_flight_style() -> Style {
    Style::default().fg(Color::LightRed).add_modifier(Modifier::BOLD)
}

fn cursor_style(selected: bool) -> Style {
    let c = if selected { Color::Yellow } else { Color::Cyan };
    Style::default().fg(c).add_modifier(Modifier::BOLD)
}

fn put(buf: &mut Buffer, x: u16, y: u16, ch: char, st: Style) {
    if let Some(cell) = buf.cell_mut((x, y)) {
        cell.set_char(ch).set_style(st);
    }
}

/// Draws the box; returns each drawn lane's area (the clickable part).
pub fn render(frame: &mut Frame<'_>, area: Rect, m: &NetModel<'_>) -> Vec<Rect> {
    let (app, man) = (m.app, m.m);
    let flying = app.cut.in_flight.len();
    let (avm, at) = app.anchor;
    let title = Line::from(vec![
        Span::styled(" ttvm network ", style::label()),
        Span::raw(format!("{} · {} VMs · {} frames ", m.title, man.vms.len(), man.frames.len())),
    ]);
    let cut = Line::from(Span::styled(
        format!(" cut through VM {avm} @ {at} · {flying} in flight "),
        if flying > 0 { in_flight_style() } else { style::warning() },
    ))
    .right_aligned();
    let legend = Line::from(vec![
        Span::styled(" ━ run before the cut  ─ after  ● cursor  ■ end  ", style::dim()),
        Span::styled("│▼ frame", frame_style()),
        Span::styled("  ┆▼ in flight at the cut", in_flight_style()),
        Span::styled("  × never received ", style::dim()),
    ]);
    let block = Block::bordered().border_style(style::border()).title(title).title(cut).title_bottom(legend);
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let n = man.vms.len() as u16;
    if n == 0 || inner.width <= LABEL_WIDTH + 10 || inner.height < 2 {
        return Vec::new();
    }
    // Gap between lanes: what fits, the axis taking the last row.
    let gap = if n > 1 { ((inner.height - 1).saturating_sub(n) / (n - 1)).min(GAP) } else { 0 };
    let shown = (((inner.height - 1) + gap) / (1 + gap)).min(n) as usize;
    let x0 = inner.x + LABEL_WIDTH;
    let width = inner.width - LABEL_WIDTH;
    let lane_y: Vec<u16> = (0..shown).map(|v| inner.y + v as u16 * (1 + gap)).collect();
    let buf = frame.buffer_mut();
    let col = |t: u64| column_of(app.window, width, t);

    // Baselines: before the cursor heavy (inside the cut), after it light, nothing past the end.
    for (v, &y) in lane_y.iter().enumerate() {
        let vm = &man.vms[v];
        let selected = v == app.selected;
        let label = format!("{}{v} {}", if selected { "▶" } else { " " }, vm.name);
        let label: String = label.chars().take(LABEL_WIDTH as usize - 1).collect();
        buf.set_string(inner.x, y, label, if selected { cursor_style(true) } else { style::label() });
        let pos = app.cut.positions.get(v).copied().unwrap_or(0);
        for c in 0..width {
            let t = super::ui::icount_at(app.window, width, c);
            if t > vm.steps {
                break;
            }
            let (ch, st) = if t < pos { ('━', Style::default().fg(Color::White)) } else { ('─', style::dim()) };
            put(buf, x0 + c, y, ch, st);
        }
        if let Col::At(c) = col(vm.steps) {
            put(buf, x0 + c, y, '■', Style::default().fg(Color::Gray).add_modifier(Modifier::BOLD));
        }
    }

    // Arrows: received frames first, frames in flight over them.
    for pass_in_flight in [false, true] {
        for f in &man.frames {
            for d in &f.to {
                let (a, b) = (f.from as usize, d.vm as usize);
                if a >= shown || b >= shown {
                    continue;
                }
                let flying = app.cut.in_flight.iter().any(|x| x.frame == f.id && x.to == d.vm);
                if flying != pass_in_flight {
                    continue;
                }
                let s = col(f.sent_at);
                let r = d.at.map(col);
                let r_or_s = r.unwrap_or(s);
                if matches!((s, r_or_s), (Col::Left, Col::Left) | (Col::Right, Col::Right)) {
                    continue;
                }
                let arrow = Arrow {
                    from_y: lane_y[a],
                    to_y: lane_y[b],
                    s: x0 + s.clamped(width),
                    r: x0 + r_or_s.clamped(width),
                    received: r.is_some(),
                    gap,
                    lanes: &lane_y,
                    style: if flying { in_flight_style() } else { frame_style() },
                    dashed: flying,
                };
                arrow.draw(buf);
            }
        }
    }

    // Cursors last: on top of everything on their lane.
    for (v, &y) in lane_y.iter().enumerate() {
        let pos = app.cut.positions.get(v).copied().unwrap_or(0);
        let st = cursor_style(v == app.selected);
        match col(pos) {
            Col::Left => put(buf, x0, y, '◂', st),
            Col::Right => put(buf, x0 + width - 1, y, '▸', st),
            Col::At(c) => put(buf, x0 + c, y, '●', st),
        }
    }

    // Axis: the window's ends.
    if let Some(&last) = lane_y.last() {
        let y = last + 1;
        if y < inner.y + inner.height {
            let (lo, hi) = app.window;
            buf.set_string(inner.x, y, "icount", style::dim());
            buf.set_string(x0, y, lo.to_string(), style::dim());
            let hi = hi.to_string();
            buf.set_string((x0 + width).saturating_sub(hi.len() as u16), y, hi, style::dim());
        }
    }
    lane_y.iter().map(|&y| Rect { x: x0, y, width, height: 1 }).collect()
}

/// One frame's arrow between two lanes.
struct Arrow<'a> {
    from_y: u16,
    to_y: u16,
    /// The send's and the reception's screen columns.
    s: u16,
    r: u16,
    received: bool,
    gap: u16,
    lanes: &'a [u16],
    style: Style,
    dashed: bool,
}

impl Arrow<'_> {
    fn draw(&self, buf: &mut Buffer) {
        let down = self.to_y > self.from_y;
        // The rows between the lanes, from the sender's side to the receiver's.
        let rows: Vec<u16> =
            if down { (self.from_y + 1..self.to_y).collect() } else { (self.to_y + 1..self.from_y).rev().collect() };
        let (vertical, horizontal) = if self.dashed { ('┆', '┄') } else { ('│', '─') };
        // Where the sender's lane meets the arrow: a stem towards it.
        put(buf, self.s, self.from_y, if down { '┬' } else { '┴' }, self.style);
        if self.received {
            put(buf, self.r, self.to_y, if down { '┴' } else { '┬' }, self.style);
        }
        if rows.is_empty() {
            return;
        }
        // It turns in the middle of the first gap.
        let turn = (self.gap as usize).saturating_sub(1) / 2;
        let last = rows.len() - 1;
        for (i, &y) in rows.iter().enumerate() {
            if self.lanes.contains(&y) {
                continue; // a lane in between: leave it readable
            }
            if i < turn {
                put(buf, self.s, y, vertical, self.style);
            } else if i == turn {
                self.turn(buf, y, down, horizontal);
            } else {
                put(buf, self.r, y, vertical, self.style);
            }
            if i == last {
                let head = match (self.received, down) {
                    (false, _) => '×',
                    (true, true) => '▼',
                    (true, false) => '▲',
                };
                put(buf, self.r, y, head, self.style);
            }
        }
    }

    /// The horizontal leg from the send's column to the reception's, with its corners.
    fn turn(&self, buf: &mut Buffer, y: u16, down: bool, horizontal: char) {
        let (s, r) = (self.s, self.r);
        if s == r {
            put(buf, s, y, if self.dashed { '┆' } else { '│' }, self.style);
            return;
        }
        for x in s.min(r) + 1..s.max(r) {
            put(buf, x, y, horizontal, self.style);
        }
        let right = r > s;
        let (at_s, at_r) = match (down, right) {
            (true, true) => ('└', '┐'),
            (true, false) => ('┘', '┌'),
            (false, true) => ('┌', '┘'),
            (false, false) => ('┐', '└'),
        };
        put(buf, s, y, at_s, self.style);
        put(buf, r, y, at_r, self.style);
    }
}
