//! ttvm-replay
