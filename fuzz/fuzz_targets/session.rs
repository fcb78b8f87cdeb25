//! Fuzz target `session`: see `protocol::fuzzing::session_script`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    protocol::fuzzing::session_script(data, std::time::Instant::now())
});
