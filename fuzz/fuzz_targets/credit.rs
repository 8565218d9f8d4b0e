//! Fuzzes CreditManager over generated valid histories, every invariant after every op. Run: see docs/fuzzing.md.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| p2pc_ledger::fuzzing::credit(data));
