//! Fuzz target `client_frame`: see `protocol::fuzzing::client_frame`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| protocol::fuzzing::client_frame(data));
