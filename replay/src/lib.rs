//! ttvm's deterministic record and replay.
//!
//! - [`engine`]: the exact single-step engine and the [`engine::StepEnv`] seam.
//! - [`record`]: `RecordSession`, devices live, everything logged to a trace.
//! - [`replay`]: `ReplaySession`, the log drives the guest and every action is checked.
//! - [`trace`], [`events`], [`checkpoint`], [`recording`]: the file format and its model.
//! - [`ram`]: rebuilding RAM at a checkpoint in time proportional to the changed pages.

pub mod branch;
pub mod checkpoint;
pub mod clock;
pub mod disk;
pub mod disk_history;
pub mod divergence;
pub mod engine;
pub mod event_log;
pub mod events;
pub mod free_fallback;
pub mod free_hits;
pub mod free_interval;
pub mod free_seek;
mod free_syscalls;
pub mod free_watch;
pub mod landmark;
pub mod mem_access;
pub mod network;
pub mod persist;
pub mod privilege;
pub mod ram;
pub mod record;
pub mod recording;
pub mod replay;
pub mod stepping;
pub mod timeline;
pub mod trace;
pub mod watch_quiet;
