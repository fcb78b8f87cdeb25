//! Fuzz target `subs`: see `edge::fuzzing::subs`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| edge::fuzzing::subs(data));
