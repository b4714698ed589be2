//! The timeline bar: the whole run on an icount axis, one lane per kind of marker, an event
//! density strip, and the cursor.
//!
//! Column j stands for the icounts [j·L/w, (j+1)·L/w); every lane counts its events per
//! column with binary searches over the trace index, so drawing costs O(w log n) whatever the
//! trace's size.

use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::Block;
use ratatui::Frame;
use ttvm_replay::events::EventClass;

use super::{style, Model};
use crate::app::Layout;
use crate::trace_info::TraceInfo;

const LABEL_WIDTH: u16 = 8;
const LANES: [&str; 8] = ["events", "irq", "io", "tsc/rng", "serial", "user", "marks", ""];
/// The lane of user-mode stretches, the marks lane and the axis.
const USER_ROW: u16 = 5;
const MARKS_ROW: u16 = 6;
const AXIS_ROW: u16 = 7;
const DENSITY: [char; 9] = [' ', '▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];

/// Draws the bar; returns the lanes' area (the clickable part).
pub fn render(frame: &mut Frame<'_>, area: Rect, m: &Model<'_>) -> Rect {
    let (app, info) = (m.app, m.info);
    let pct = if info.length == 0 { 100.0 } else { app.cursor as f64 * 100.0 / info.length as f64 };
    let position = format!("│ icount {} / {} ({pct:.2}%) ", app.cursor, info.length);
    let end_label = format!(" end: {} ", info.end.label());
    // The right-aligned end label would overwrite the tail of the left title, so a long
    // kernel path gives way first and the icount always stays readable.
    let fixed = " ttvm ".len() + position.chars().count() + end_label.chars().count() + 3;
    let room = (area.width as usize).saturating_sub(fixed);
    let title = Line::from(vec![
        Span::styled(" ttvm ", style::label()),
        Span::raw(format!("{} ", elide_left(&info.title, room.saturating_sub(1)))),
        Span::styled(position, style::warning()),
    ]);
    let end = Line::from(Span::styled(
        end_label,
        Style::default().fg(style::end_color(&info.end)).add_modifier(Modifier::BOLD),
    ))
    .right_aligned();
    let block = Block::bordered().border_style(style::border()).title(title).title(end).title_bottom(legend(info));
    let inner = block.inner(area);
    frame.render_widget(block, area);
    if inner.width <= LABEL_WIDTH + 2 || inner.height < LANES.len() as u16 {
        return Rect::default();
    }
    let buf = frame.buffer_mut();
    for (i, name) in LANES.iter().enumerate() {
        buf.set_string(inner.x, inner.y + i as u16, name, style::dim());
    }
    let lanes = Rect { x: inner.x + LABEL_WIDTH, width: inner.width - LABEL_WIDTH, ..inner };
    draw_lanes(buf, lanes, m);
    Rect { height: LANES.len() as u16 - 1, ..lanes }
}

/// `text` cut to at most `room` characters by dropping its start (a path's least telling
/// part), marked with an ellipsis.
fn elide_left(text: &str, room: usize) -> String {
    let n = text.chars().count();
    if n <= room {
        return text.to_string();
    }
    if room == 0 {
        return String::new();
    }
    let tail: String = text.chars().skip(n - (room - 1)).collect();
    format!("…{tail}")
}

fn legend(info: &TraceInfo) -> Line<'static> {
    let mut spans = vec![Span::styled(" irq vectors:", style::dim())];
    for (rank, v) in vectors(info).iter().enumerate().take(6) {
        spans.push(Span::styled(format!(" {v:#04x}"), Style::default().fg(style::vector_color(rank))));
    }
    spans.push(Span::styled(" · ", style::dim()));
    spans.push(Span::styled("▀", style::user_mode()));
    spans.push(Span::styled(
        " user mode (u/U)  ┊ checkpoint  ★ bookmark  ✖ divergence  ■ end · click to jump ",
        style::dim(),
    ));
    Line::from(spans)
}

/// Distinct interrupt vectors in the order of their first appearance's value.
fn vectors(info: &TraceInfo) -> Vec<u8> {
    let mut v: Vec<u8> = info.interrupts.iter().map(|&(_, v)| v).collect();
    v.sort_unstable();
    v.dedup();
    v
}

fn put(buf: &mut Buffer, x: u16, y: u16, ch: char, style: Style) {
    if let Some(cell) = buf.cell_mut((x, y)) {
        cell.set_char(ch).set_style(style);
    }
}

fn draw_lanes(buf: &mut Buffer, r: Rect, m: &Model<'_>) {
    let (app, info) = (m.app, m.info);
    let len = info.length;
    let vectors = vectors(info);
    let counts: Vec<usize> = (0..r.width)
        .map(|c| {
            let (lo, hi) = Layout::bucket(c, r.width, len);
            TraceInfo::count_in(&info.event_icounts, lo, hi)
        })
        .collect();
    let max = counts.iter().copied().max().unwrap_or(0).max(1) as f64;
    let y = r.y;
    for c in 0..r.width {
        let x = r.x + c;
        let (lo, hi) = Layout::bucket(c, r.width, len);
        // Density, log-scaled: event rates differ by orders of magnitude along a run.
        if counts[c as usize] > 0 {
            let level = ((counts[c as usize] as f64 + 1.0).ln() / (max + 1.0).ln() * 8.0).ceil().clamp(1.0, 8.0);
            put(buf, x, y, DENSITY[level as usize], Style::default().fg(Color::Gray));
        }
        let irq = info.interrupts.partition_point(|&(i, _)| i < lo);
        if let Some(&(i, v)) = info.interrupts.get(irq) {
            if i < hi {
                let rank = vectors.binary_search(&v).unwrap_or(0);
                put(buf, x, y + 1, '┃', Style::default().fg(style::vector_color(rank)));
            }
        }
        let io = TraceInfo::count_in(info.class_icounts(EventClass::Io), lo, hi);
        if io > 0 {
            let ch = match io {
                1 => '░',
                2..=9 => '▒',
                10..=99 => '▓',
                _ => '█',
            };
            put(buf, x, y + 2, ch, Style::default().fg(style::class_color(EventClass::Io)));
        }
        let time = TraceInfo::count_in(info.class_icounts(EventClass::Time), lo, hi) > 0;
        let rand = TraceInfo::count_in(info.class_icounts(EventClass::Random), lo, hi) > 0;
        match (time, rand) {
            (true, true) => put(buf, x, y + 3, '*', Style::default().fg(Color::LightYellow)),
            (true, false) => put(buf, x, y + 3, 't', Style::default().fg(style::class_color(EventClass::Time))),
            (false, true) => put(buf, x, y + 3, 'r', Style::default().fg(style::class_color(EventClass::Random))),
            (false, false) => {}
        }
        if TraceInfo::count_in(&info.line_icounts, lo, hi) > 0 {
            put(buf, x, y + 4, '•', Style::default().fg(style::class_color(EventClass::SerialOut)));
        } else if TraceInfo::count_in(info.class_icounts(EventClass::SerialOut), lo, hi) > 0 {
            put(buf, x, y + 4, '·', Style::default().fg(style::class_color(EventClass::SerialOut)));
        }
        if user_mode_in(&app.user_spans, lo, hi) {
            put(buf, x, y + USER_ROW, '▀', style::user_mode());
        }
        if TraceInfo::count_in(&info.checkpoints, lo, hi) > 0 {
            put(buf, x, y + MARKS_ROW, '┊', style::dim());
        }
        if app.bookmarks.range(lo..hi).next().is_some() {
            put(buf, x, y + MARKS_ROW, '★', Style::default().fg(Color::Yellow).add_modifier(Modifier::BOLD));
        }
    }
    let last = r.x + r.width - 1;
    put(buf, last, y + MARKS_ROW, '■', Style::default().fg(style::end_color(&info.end)).add_modifier(Modifier::BOLD));
    if let Some(d) = app.divergence {
        let x = r.x + Layout::column_of(r.width, d, len);
        put(buf, x, y + MARKS_ROW, '✖', style::error());
    }
    draw_cursor(buf, r, app.cursor, len);
}

/// Whether a user-mode stretch overlaps the icounts `[lo, hi)` (spans sorted, disjoint).
fn user_mode_in(spans: &[(u64, u64)], lo: u64, hi: u64) -> bool {
    let i = spans.partition_point(|&(_, to)| to <= lo);
    spans.get(i).is_some_and(|&(from, _)| from < hi)
}

fn draw_cursor(buf: &mut Buffer, r: Rect, cursor: u64, len: u64) {
    let cx = r.x + Layout::column_of(r.width, cursor, len);
    for row in 0..AXIS_ROW {
        if let Some(cell) = buf.cell_mut((cx, r.y + row)) {
            cell.set_bg(Color::DarkGray);
            if cell.symbol() == " " {
                cell.set_char('│').set_fg(Color::White);
            }
        }
    }
    // Axis: 0 at the left, the length at the right, the cursor's icount next to its mark.
    let y = r.y + AXIS_ROW;
    let end = len.to_string();
    buf.set_string(r.x, y, "0", style::dim());
    let end_x = (r.x + r.width).saturating_sub(end.len() as u16);
    buf.set_string(end_x, y, &end, style::dim());
    let pct = if len == 0 { 100.0 } else { cursor as f64 * 100.0 / len as f64 };
    let label = format!(" {cursor} ({pct:.1}%)");
    let lw = label.chars().count() as u16;
    let lx = if cx + 1 + lw <= r.x + r.width { cx + 1 } else { cx.saturating_sub(lw).max(r.x) };
    buf.set_string(lx, y, &label, style::warning());
    put(buf, cx, y, '▲', style::warning());
}

#[cfg(test)]
mod tests {
    use super::{elide_left, user_mode_in};

    #[test]
    fn a_column_shows_user_mode_when_a_stretch_overlaps_it() {
        let spans = [(10, 20), (40, 41)];
        assert!(!user_mode_in(&spans, 0, 10));
        assert!(user_mode_in(&spans, 5, 11));
        assert!(user_mode_in(&spans, 19, 30));
        assert!(!user_mode_in(&spans, 20, 40));
        assert!(user_mode_in(&spans, 40, 41));
        assert!(!user_mode_in(&[], 0, 100));
    }

    #[test]
    fn long_titles_lose_their_start_and_keep_the_file_names() {
        let t = "/check/work/main/target/linux-cache/boot/vmlinuz-6.1.0-57-amd64 · linux.ttvm";
        assert_eq!(elide_left(t, 200), t);
        let short = elide_left(t, 30);
        assert_eq!(short.chars().count(), 30);
        assert!(short.starts_with('…') && short.ends_with("-amd64 · linux.ttvm"), "{short}");
        assert_eq!(elide_left(t, 0), "");
        assert_eq!(elide_left(t, 1), "…");
    }
}
