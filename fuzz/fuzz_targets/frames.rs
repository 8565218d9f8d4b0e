//! Fuzzes frames from an isolated wasm worker, in any split. Run: see docs/fuzzing.md.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| p2pc_exec::fuzzing::frames(data));
