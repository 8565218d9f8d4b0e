//! Fuzzes gossiped offers and the market view of them. Run: see docs/fuzzing.md.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| p2pc_node::fuzzing::advert(data));
