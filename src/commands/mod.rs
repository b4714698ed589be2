//! One module per `ttvm` subcommand.

pub mod bench;
pub mod branch;
pub mod check;
pub mod debug;
pub mod disk;
pub mod family;
pub mod gdb_server;
pub mod info;
pub mod kernels;
pub mod live;
pub mod network;
pub mod panic_watch;
pub mod record;
pub mod replay;
pub mod run;
pub mod run_then_record;
pub mod tui;
pub mod verify_pieces;
