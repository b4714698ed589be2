//! The exact engine's saved state.

use serde::{Deserialize, Serialize};

use crate::engine::EngineState;

/// The engine's position, as saved in every trace checkpoint.
///
/// Its bincode encoding is frozen (see [`crate::persist`]): any change is a new version
/// type plus a conversion, never an edit of this one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedEngineState {
    /// Steps executed since reset.
    pub icount: u64,
    /// Whether the guest could take an interrupt at this boundary.
    pub window_open: bool,
}

impl From<EngineState> for SavedEngineState {
    fn from(live: EngineState) -> Self {
        Self { icount: live.icount, window_open: live.window_open }
    }
}

impl From<SavedEngineState> for EngineState {
    // Every (icount, window) pair is a position the engine can be at: nothing to refuse.
    fn from(saved: SavedEngineState) -> Self {
        EngineState { icount: saved.icount, window_open: saved.window_open }
    }
}
