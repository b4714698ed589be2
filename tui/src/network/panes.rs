//! The panes under the lanes: the frames around the selected VM's cursor (both ends of
//! each), and the cut (every VM's position and the frames in flight at it).

use ratatui::layout::Rect;
use ratatui::style::{Color, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Paragraph};
use ratatui::Frame;

use super::frames::frame_points;
use super::lanes::in_flight_style;
use super::ui::NetModel;
use crate::ui::style;

/// The frames the selected VM sent and received around its cursor, the cursor's place
/// marked; a frame in flight at the cut says so.
pub fn frames(frame: &mut Frame<'_>, area: Rect, m: &NetModel<'_>) {
    let (app, man) = (m.app, m.m);
    let vm = app.selected;
    let now = app.cursor();
    let name = man.vms.get(vm).map_or("?", |v| v.name.as_str());
    let block = Block::bordered()
        .border_style(style::focused_border())
        .title(format!(" Frames of VM {vm} ({name}) around icount {now} · [ ] jump "));
    let inner = block.inner(area);
    let points = frame_points(man, vm);
    let split = points.partition_point(|p| p.at < now);
    // As many before the cursor as after it, the cursor's line in the middle.
    let rows = inner.height.saturating_sub(1) as usize;
    let after = (points.len() - split).min(rows - split.min(rows / 2));
    let before = split.min(rows - after);
    let mut lines = Vec::new();
    for p in &points[split - before..split] {
        lines.push(point_line(p, vm, m, false));
    }
    lines.push(Line::from(Span::styled(format!("── now: VM {vm} at icount {now} ──"), style::warning())));
    for p in &points[split..split + after] {
        lines.push(point_line(p, vm, m, true));
    }
    if points.is_empty() {
        lines.push(Line::from(Span::styled("this VM sent and received no frames", style::dim())));
    }
    frame.render_widget(Paragraph::new(lines).block(block), area);
}

fn point_line(p: &super::frames::FramePoint, vm: usize, m: &NetModel<'_>, later: bool) -> Line<'static> {
    let mut text = p.describe(m.m);
    let flying = p.in_flight(vm, &m.app.cut);
    if flying {
        text.push_str("  · in flight");
    }
    let st = if flying {
        in_flight_style()
    } else if later {
        style::dim()
    } else {
        Style::default()
    };
    Line::from(Span::styled(text, st))
}

/// Every VM's position at the cut, then the frames in flight at it.
pub fn cut(frame: &mut Frame<'_>, area: Rect, m: &NetModel<'_>) {
    let (app, man) = (m.app, m.m);
    let (avm, at) = app.anchor;
    let block = Block::bordered().border_style(style::border()).title(format!(" Cut through VM {avm} @ {at} "));
    let mut lines = Vec::new();
    for (v, vm) in man.vms.iter().enumerate() {
        let pos = app.cut.positions.get(v).copied().unwrap_or(0);
        let pct = if vm.steps == 0 { 100.0 } else { pos as f64 * 100.0 / vm.steps as f64 };
        let sel = v == app.selected;
        lines.push(Line::from(vec![
            Span::styled(
                format!("{}VM {v} {:<8}", if sel { "▶" } else { " " }, vm.name),
                if sel { style::warning() } else { style::label() },
            ),
            Span::raw(format!(" @ {pos} / {} ({pct:.1}%)", vm.steps)),
        ]));
    }
    lines.push(Line::from(""));
    let flying = &app.cut.in_flight;
    if flying.is_empty() {
        lines.push(Line::from(Span::styled("no frame in flight at the cut", style::dim())));
    } else {
        lines.push(Line::from(Span::styled(format!("{} in flight at the cut:", flying.len()), in_flight_style())));
    }
    for x in flying {
        let Some(f) = man.frames.iter().find(|f| f.id == x.frame) else { continue };
        let recv = f.to.iter().find(|d| d.vm == x.to).and_then(|d| d.at);
        let recv = recv.map_or("never received".to_string(), |a| format!("received @{a}"));
        lines.push(Line::from(Span::styled(
            format!(" #{} VM {} @{} → VM {} ({recv})", f.id, f.from, f.sent_at, x.to),
            Style::default().fg(Color::LightRed),
        )));
    }
    frame.render_widget(Paragraph::new(lines).block(block), area);
}
