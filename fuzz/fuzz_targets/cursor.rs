//! Fuzz target `cursor`: see `edge::fuzzing::cursor`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| edge::fuzzing::cursor(data));
