//! What an engine needs from the network a VM's card is plugged into: somewhere to put the
//! frames the guest sends, and the frames waiting for it. Implemented over a shared
//! [`Switch`](super::switch::Switch) by the multi-VM runner; the device itself never sees it.

use std::time::Duration;

use super::switch::SwitchedFrame;

/// One VM's port on a network.
pub trait NetLink {
    /// A frame the guest sent enters the network; returns the id the network gave it (a
    /// recording names the frame by it).
    fn send(&mut self, frame: Vec<u8>) -> u64;
    /// Whether a frame is waiting for this VM.
    fn has_frame(&self) -> bool;
    /// The switch id of the oldest frame waiting for this VM (ids grow in the order frames
    /// entered the network).
    fn oldest_id(&self) -> Option<u64>;
    /// Takes the oldest frame waiting for this VM.
    fn take(&mut self) -> Option<SwitchedFrame>;
    /// Sleeps until a frame is waiting for this VM or `timeout` has passed (the halted
    /// guest's idle wait, so a frame wakes it at once).
    fn wait(&self, timeout: Duration);
}
