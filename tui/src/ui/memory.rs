//! The memory pane: a hex dump at a register or a typed address, read through the guest's
//! page tables as they are at the cursor.

use ratatui::layout::Rect;
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;
use ratatui::Frame;

use super::{pane_block, style, Model};
use crate::view::MemRow;

fn ascii(b: Option<u8>) -> char {
    match b {
        Some(c) if c.is_ascii_graphic() || c == b' ' => c as char,
        Some(_) => '.',
        None => ' ',
    }
}

fn row_line(addr: u64, bytes: &[Option<u8>], target: u64) -> Line<'static> {
    let mut spans = vec![Span::styled(format!("{addr:016x} "), style::dim())];
    if bytes.iter().all(Option::is_none) {
        spans.push(Span::styled(" -- not mapped --", style::warning()));
        return Line::from(spans);
    }
    for (i, b) in bytes.iter().enumerate() {
        let a = addr.wrapping_add(i as u64);
        let st = if a == target { style::current() } else { Style::default() };
        spans.push(Span::raw(" "));
        spans.push(match b {
            Some(v) => Span::styled(format!("{v:02x}"), st),
            None => Span::styled("??", style::warning()),
        });
    }
    spans.push(Span::styled(format!("  {}", bytes.iter().map(|&b| ascii(b)).collect::<String>()), style::dim()));
    Line::from(spans)
}

/// Draws the pane.
pub fn render(frame: &mut Frame<'_>, area: Rect, m: &Model<'_>, focused: bool) {
    let mem = &m.view.memory;
    let target = &m.app.mem;
    let mut title = format!(" Memory · {} = {:#x}", target.text, mem.addr);
    if let Some(s) = &mem.symbol {
        title.push_str(&format!(" <{s}>"));
    }
    title.push_str(" · guest-virtual · a: address ");
    let block = pane_block(title, focused);
    let inner = block.inner(area);
    // 16 bytes a row when they fit (address, hex, ASCII), else 8.
    let per_row = if inner.width >= 17 + 16 * 3 + 2 + 16 { 16 } else { 8 };
    let rows: Vec<(u64, &[Option<u8>])> = mem
        .rows
        .iter()
        .flat_map(|r: &MemRow| {
            r.bytes.chunks(per_row).enumerate().map(move |(i, c)| (r.addr.wrapping_add((i * per_row) as u64), c))
        })
        .take(usize::from(inner.height))
        .collect();
    let lines: Vec<Line<'static>> = rows.into_iter().map(|(a, b)| row_line(a, b, mem.addr)).collect();
    frame.render_widget(Paragraph::new(lines).block(block), area);
}
