//! Fuzz target `subs`: see `protocol::fuzzing::subs`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| protocol::fuzzing::subs(data));
