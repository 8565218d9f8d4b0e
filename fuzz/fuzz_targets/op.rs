//! Fuzzes ledger op decoding, its round trip and admission to a replica. Run: see docs/fuzzing.md.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| p2pc_ledger::fuzzing::op(data));
