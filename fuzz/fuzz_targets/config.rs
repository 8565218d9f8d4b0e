//! Fuzzes node.toml and every check a starting node makes. Run: see docs/fuzzing.md.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| p2pc_node::fuzzing::config(data));
