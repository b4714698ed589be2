//! Recording a network of VMs: the manifest a recording directory holds next to its traces
//! (which VMs, and every frame's send and receive points), and the causally consistent
//! cut through a point of one VM's history, computed from the manifest alone.
//!
//! Positions follow the trace convention: a VM "at icount p" has executed p steps, and an
//! event logged at icount e is part of its history at p when e < p.

pub mod cut;
pub mod frames;
pub mod manifest;
pub mod record;
pub mod snapshot;
