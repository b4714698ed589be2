//! The integration tests' helpers are the test-support crate's (`ttvm-test-support`);
//! this module keeps their `common::` paths.
#![allow(unused_imports)]

pub use ttvm_test_support::*;
