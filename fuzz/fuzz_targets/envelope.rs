//! Fuzzes envelope decoding and opening. Run: see docs/fuzzing.md.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| p2pc_crypto::fuzzing::envelope(data));
