//! Userspace device models. Each is a plain state machine: no threads, no host clock.
//! Time enters only as a `now_ns` argument supplied by the caller's clock.

pub mod pic;
pub mod pit;
pub mod rtc;
pub mod serial;
