//! Fuzz target `webhook_url`: see `control::fuzzing::webhook_url`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| control::fuzzing::webhook_url(data));
