//! The bodies of the fuzz targets over the edge's pure parsers (`fuzz/` at the repository root
//! holds the libFuzzer binaries, one line each): the carriers' cursor and `subs`, and the
//! steps of `http_api::authenticate` that need no catalog (query decoding, preflight and
//! signature checks). Each panics only when an invariant breaks.
//!
//! They live here, not in `fuzz/`, so they can reach the crate's private parsers and so an
//! ordinary `cargo test` replays every input the fuzzer ever crashed on
//! (`fuzz/regressions/<target>/`) and every seed through the same code. Not an API: hidden
//! from the docs.

mod carriers;
mod request_signature;

pub use carriers::{cursor, subs};
pub use request_signature::request_signature;

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

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
    fn cursor_replays_its_seeds_and_regressions() {
        for (path, bytes) in stored_inputs("cursor") {
            eprintln!("{}", path.display());
            super::cursor(&bytes);
        }
    }

    #[test]
    fn subs_replays_its_seeds_and_regressions() {
        for (path, bytes) in stored_inputs("subs") {
            eprintln!("{}", path.display());
            super::subs(&bytes);
        }
    }

    #[test]
    fn request_signature_replays_its_seeds_and_regressions() {
        for (path, bytes) in stored_inputs("request_signature") {
            eprintln!("{}", path.display());
            super::request_signature(&bytes);
        }
    }
}
