//! Fuzzes the HTTP API's JSON bodies and Range headers. Run: see docs/fuzzing.md.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| p2pc_api::fuzzing::bodies(data));
