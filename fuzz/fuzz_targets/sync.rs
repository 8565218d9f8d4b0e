//! Fuzzes ledger sync requests and op frames, and the answer to a request. Run: see docs/fuzzing.md.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| p2pc_ledger::fuzzing::sync(data));
