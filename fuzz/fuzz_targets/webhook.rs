//! Fuzzes payment webhooks as the issuer's open route takes them. Run:
//! see docs/fuzzing.md.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| p2pc_payments::fuzzing::webhook(data));
