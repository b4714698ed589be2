//! The `ttvm` command line as a library: the commands, the exit statuses and the shared
//! options. The `ttvm` binary (`main.rs`) parses arguments and dispatches here; the
//! benchmark harness (`ttvm-bench`, a separate workspace member) reuses what it needs
//! (trace opening, whole-trace verify, exit statuses) instead of copies.

pub mod commands;
pub mod exit_code;
pub mod kernel_arg;
pub mod options;
pub mod signals;
