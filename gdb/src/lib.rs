//! ttvm-gdb
