//! Fuzzes task-protocol requests and replies, the specs, holds and receipts in them. Run: see docs/fuzzing.md.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| p2pc_node::fuzzing::task(data));
