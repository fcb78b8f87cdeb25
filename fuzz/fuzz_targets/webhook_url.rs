//! Fuzz target `webhook_url`: see `tenancy::fuzzing::webhook_url`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tenancy::fuzzing::webhook_url(data));
