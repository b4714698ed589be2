//! ttvm-tui
