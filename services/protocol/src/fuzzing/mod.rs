//! The bodies of the fuzz targets over this crate (`fuzz/` at the repository root holds the
//! libFuzzer binaries, one line each): the client frame parser, the session machine, request
//! signatures and auth tokens, and the HTTP carriers' cursor and `subs`. Each takes the
//! fuzzer's bytes, drives a parser or the session machine, and panics only when an invariant
//! breaks.
//!
//! They live here, not in `fuzz/`, so an ordinary `cargo test` replays every input the fuzzer
//! ever crashed on (`fuzz/regressions/<target>/`) and every seed (`fuzz/corpus/<target>/`)
//! through the same code, without the fuzzer. Not an API: hidden from the docs.

mod carriers;
mod client_frame;
mod request_signature;
mod session_script;

pub use carriers::{cursor, subs};
pub use client_frame::client_frame;
pub use request_signature::request_signature;
pub use session_script::session_script;

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};
    use std::time::Instant;

    /// Every stored input of `target`: its seeds and its regressions.
    fn stored_inputs(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
        let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz");
        let mut inputs = Vec::new();
        for folder in ["corpus", "regressions"] {
            let Ok(entries) = std::fs::read_dir(fuzz.join(folder).join(target)) else {
                continue;
            };
            for entry in entries {
                let path = entry.expect("readable fuzz folder").path();
                let bytes = std::fs::read(&path).expect("readable fuzz input");
                inputs.push((path, bytes));
            }
        }
        assert!(!inputs.is_empty(), "no seeds for fuzz target {target}");
        inputs
    }

    #[test]
    fn client_frame_replays_its_seeds_and_regressions() {
        for (path, bytes) in stored_inputs("client_frame") {
            eprintln!("{}", path.display());
            super::client_frame(&bytes);
        }
    }

    #[test]
    fn session_replays_its_seeds_and_regressions() {
        for (path, bytes) in stored_inputs("session") {
            eprintln!("{}", path.display());
            super::session_script(&bytes, Instant::now());
        }
    }

    #[test]
    fn request_signature_replays_its_seeds_and_regressions() {
        for (path, bytes) in stored_inputs("request_signature") {
            eprintln!("{}", path.display());
            super::request_signature(&bytes);
        }
    }

    #[test]
    fn cursor_replays_its_seeds_and_regressions() {
        for (path, bytes) in stored_inputs("cursor") {
            eprintln!("{}", path.display());
            super::cursor(&bytes);
        }
    }

    /// The signed seed reaches past the signature check, so the fuzzer starts from there.
    #[test]
    fn the_signed_cursor_seed_verifies() {
        let path =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/cursor/signed.txt");
        let text = std::fs::read_to_string(path).expect("the signed cursor seed");
        let verified =
            crate::carrier_cursor::verify(&text, "fuzz-key", "fuzz-secret", 1_700_000_000);
        assert!(verified.is_ok(), "{verified:?}");
    }

    #[test]
    fn subs_replays_its_seeds_and_regressions() {
        for (path, bytes) in stored_inputs("subs") {
            eprintln!("{}", path.display());
            super::subs(&bytes);
        }
    }
}
