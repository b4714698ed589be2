//! Colours and emphasis, in one place so the panes agree (an interrupt is the same colour in
//! the timeline and in the event list).

use ratatui::style::{Color, Modifier, Style};
use ttvm_replay::events::EventClass;

use crate::trace_info::EndState;

/// Colour of an event class.
pub fn class_color(c: EventClass) -> Color {
    match c {
        EventClass::Interrupt => Color::Magenta,
        EventClass::Io => Color::Cyan,
        EventClass::Time => Color::Yellow,
        EventClass::Random => Color::LightYellow,
        EventClass::SerialOut => Color::Green,
        EventClass::SerialIn => Color::LightGreen,
        EventClass::Unmodelled => Color::LightRed,
        EventClass::Stop => Color::Red,
        EventClass::Disk => Color::LightBlue,
        EventClass::Net => Color::Blue,
    }
}

/// Colours told apart for interrupt vectors (the n-th distinct vector of the trace).
const VECTOR_COLORS: [Color; 6] =
    [Color::Magenta, Color::LightBlue, Color::LightMagenta, Color::Blue, Color::LightRed, Color::LightCyan];

/// Colour of the `rank`-th distinct interrupt vector.
pub fn vector_color(rank: usize) -> Color {
    VECTOR_COLORS[rank % VECTOR_COLORS.len()]
}

/// Colour of the end marker.
pub fn end_color(e: &EndState) -> Color {
    match e {
        EndState::CleanExit => Color::Green,
        EndState::Stopped(_) | EndState::Unfinished => Color::Yellow,
        _ => Color::Red,
    }
}

/// A focused pane's border.
pub fn focused_border() -> Style {
    Style::default().fg(Color::Cyan)
}

/// An unfocused pane's border.
pub fn border() -> Style {
    Style::default().fg(Color::DarkGray)
}

/// A register value changed by the last step.
pub fn changed() -> Style {
    Style::default().fg(Color::Yellow).add_modifier(Modifier::BOLD)
}

/// The current instruction, the cursor.
pub fn current() -> Style {
    Style::default().add_modifier(Modifier::REVERSED | Modifier::BOLD)
}

/// Secondary text.
/// Stretches of user mode (ring 3) on the timeline.
pub fn user_mode() -> Style {
    Style::default().fg(Color::LightMagenta)
}

/// Secondary text.
pub fn dim() -> Style {
    Style::default().fg(Color::DarkGray)
}

/// Labels and headings.
pub fn label() -> Style {
    Style::default().fg(Color::Blue).add_modifier(Modifier::BOLD)
}

/// Something the user should read.
pub fn warning() -> Style {
    Style::default().fg(Color::Yellow).add_modifier(Modifier::BOLD)
}

/// Errors.
pub fn error() -> Style {
    Style::default().fg(Color::Red).add_modifier(Modifier::BOLD)
}

/// A search match.
pub fn matched() -> Style {
    Style::default().fg(Color::Black).bg(Color::Yellow)
}

/// A key bar: each key on a grey chip, then what it does.
pub fn key_hints(hints: &[(&str, &str)]) -> ratatui::text::Line<'static> {
    use ratatui::text::Span;
    let mut spans = vec![Span::raw(" ")];
    for (k, what) in hints {
        spans.push(Span::styled(k.to_string(), Style::default().fg(Color::Black).bg(Color::Gray)));
        spans.push(Span::raw(format!(" {what}  ")));
    }
    ratatui::text::Line::from(spans)
}

/// A prompt being typed: its label, the input, a blinking cursor and how to end it.
pub fn prompt_line(label: String, input: &str) -> ratatui::text::Line<'static> {
    use ratatui::text::Span;
    ratatui::text::Line::from(vec![
        Span::styled(label, self::label()),
        Span::raw(input.to_string()),
        Span::styled("█", Style::default().add_modifier(Modifier::SLOW_BLINK)),
        Span::styled("   Enter ok · Esc cancel", dim()),
    ])
}
