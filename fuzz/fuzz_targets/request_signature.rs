//! Fuzz target `request_signature`: see `edge::fuzzing::request_signature`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| edge::fuzzing::request_signature(data));
