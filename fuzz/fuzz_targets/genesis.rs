//! Fuzzes genesis files. Run: see docs/fuzzing.md.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| p2pc_ledger::fuzzing::genesis(data));
