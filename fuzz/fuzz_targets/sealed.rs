//! Fuzzes opening sealed blobs (in memory and streamed) and unwrapping
//! keys. Run: see docs/fuzzing.md.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| p2pc_crypto::fuzzing::sealed(data));
