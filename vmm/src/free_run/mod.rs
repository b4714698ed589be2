//! The free-running engine behind `ttvm run`: the KVM_RUN loop (`engine.rs`, its items re-exported here), the SIGALRM
//! kick that gets the vCPU out of KVM_RUN at device deadlines ([`kick`], which the replay
//! crate's free intervals reuse), the RIP profile ([`profile`]), snapshots taken when a
//! run stops ([`snapshot`]) and live checkpoints taken while it runs ([`live`]). Nothing
//! here is deterministic; recording and replay are the exact engine's (`ttvm-replay`).

mod engine;
pub mod kick;
pub mod live;
pub mod profile;
pub mod snapshot;

pub use engine::{run_free, run_free_networked, FreeRunEnd, FreeRunError, FreeRunOptions};
