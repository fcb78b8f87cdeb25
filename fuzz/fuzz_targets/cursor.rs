//! Fuzz target `cursor`: see `protocol::fuzzing::cursor`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| protocol::fuzzing::cursor(data));
