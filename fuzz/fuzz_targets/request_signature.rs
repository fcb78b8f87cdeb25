//! Fuzz target `request_signature`: see `protocol::fuzzing::request_signature`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| protocol::fuzzing::request_signature(data));
