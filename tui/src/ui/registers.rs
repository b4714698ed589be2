//! The register pane: values at the cursor, those the previous instruction changed
//! highlighted.

use kvm_bindings::{kvm_regs, kvm_segment, kvm_sregs};
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;
use ratatui::Frame;

use super::{pane_block, style};
use crate::view::View;

const FLAGS: [(u32, &str); 9] =
    [(11, "OF"), (10, "DF"), (9, "IF"), (8, "TF"), (7, "SF"), (6, "ZF"), (4, "AF"), (2, "PF"), (0, "CF")];

struct Entry {
    name: &'static str,
    value: String,
    changed: bool,
}

fn gprs(r: &kvm_regs) -> [(&'static str, u64); 18] {
    [
        ("rip", r.rip),
        ("rsp", r.rsp),
        ("rax", r.rax),
        ("rbx", r.rbx),
        ("rcx", r.rcx),
        ("rdx", r.rdx),
        ("rsi", r.rsi),
        ("rdi", r.rdi),
        ("rbp", r.rbp),
        ("rfl", r.rflags),
        ("r8", r.r8),
        ("r9", r.r9),
        ("r10", r.r10),
        ("r11", r.r11),
        ("r12", r.r12),
        ("r13", r.r13),
        ("r14", r.r14),
        ("r15", r.r15),
    ]
}

fn system(s: &kvm_sregs) -> [(&'static str, u64, bool); 12] {
    let seg = |g: &kvm_segment| u64::from(g.selector);
    [
        ("cs", seg(&s.cs), true),
        ("ss", seg(&s.ss), true),
        ("ds", seg(&s.ds), true),
        ("es", seg(&s.es), true),
        ("fs", seg(&s.fs), true),
        ("gs", seg(&s.gs), true),
        ("cr0", s.cr0, false),
        ("cr2", s.cr2, false),
        ("cr3", s.cr3, false),
        ("cr4", s.cr4, false),
        ("efer", s.efer, false),
        ("gsb", s.gs.base, false),
    ]
}

fn entries(v: &View) -> Vec<Entry> {
    let prev = v.prev.as_ref();
    let mut out: Vec<Entry> = gprs(&v.regs.regs)
        .iter()
        .enumerate()
        .map(|(i, &(name, val))| Entry {
            name,
            value: format!("{val:016x}"),
            changed: prev.is_some_and(|p| gprs(&p.regs)[i].1 != val),
        })
        .collect();
    out.extend(system(&v.regs.sregs).iter().enumerate().map(|(i, &(name, val, short))| Entry {
        name,
        value: if short { format!("{val:04x}") } else { format!("{val:016x}") },
        changed: prev.is_some_and(|p| system(&p.sregs)[i].1 != val),
    }));
    out
}

fn flags(rflags: u64) -> String {
    FLAGS.iter().filter(|(bit, _)| rflags >> bit & 1 == 1).map(|(_, n)| *n).collect::<Vec<_>>().join(" ")
}

fn span(e: &Entry) -> Vec<Span<'static>> {
    let vs = if e.changed { style::changed() } else { ratatui::style::Style::default() };
    vec![Span::styled(format!("{:<4} ", e.name), style::label()), Span::styled(e.value.clone(), vs)]
}

/// Draws the pane.
pub fn render(frame: &mut Frame<'_>, area: Rect, v: &View, focused: bool) {
    // Where the guest is: user mode or the kernel (CS's privilege level).
    let ring = if v.regs.sregs.cs.dpl == 3 { "ring 3, user" } else { "ring 0, kernel" };
    let title = if v.prev.is_some() && area.width >= 56 {
        format!(" Registers · {ring} (changed by the last step) ")
    } else {
        format!(" Registers · {ring} ")
    };
    let block = pane_block(title, focused);
    let inner = block.inner(area);
    let list = entries(v);
    // Two columns when there is room: all of the general registers then fit in 9 rows.
    let two = inner.width >= 44;
    let mut lines: Vec<Line<'static>> = Vec::new();
    if two {
        for pair in list.chunks(2) {
            let mut spans = span(&pair[0]);
            if let Some(b) = pair.get(1) {
                spans.push(Span::raw("  "));
                spans.extend(span(b));
            }
            lines.push(Line::from(spans));
        }
    } else {
        lines.extend(list.iter().map(|e| Line::from(span(e))));
    }
    let flag_line =
        Line::from(vec![Span::styled("flags ", style::label()), Span::raw(format!("[{}]", flags(v.regs.regs.rflags)))]);
    // Flags right after rflags' row, where the eye already is.
    let at = if two { 5 } else { 10 };
    lines.insert(at.min(lines.len()), flag_line);
    frame.render_widget(Paragraph::new(lines).block(block), area);
}
