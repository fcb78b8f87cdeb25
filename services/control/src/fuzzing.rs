//! The body of the `webhook_url` fuzz target (`fuzz/` at the repository root holds the
//! libFuzzer binary): any text a tenant may give as a webhook's URL. Here rather than in
//! `fuzz/` so an ordinary `cargo test` replays every input the fuzzer ever crashed on
//! (`fuzz/regressions/webhook_url/`) and every seed. Not an API: hidden from the docs.

use crate::domain::{MAX_WEBHOOK_URL_LEN, WebhookUrl};

/// Parses `data` as a webhook URL. What is stored keeps the documented bound, is an http(s)
/// URL with a host, and parses again to itself (so editing a webhook never changes its URL).
pub fn webhook_url(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(url) = WebhookUrl::parse(text) else {
        return;
    };
    let stored = url.as_str();
    assert!(
        stored.len() <= MAX_WEBHOOK_URL_LEN,
        "a stored webhook url of {} bytes",
        stored.len()
    );
    let parsed = reqwest::Url::parse(stored).expect("a stored webhook url is a URL");
    assert!(matches!(parsed.scheme(), "http" | "https"));
    assert!(parsed.host_str().is_some_and(|host| !host.is_empty()));
    assert_eq!(
        WebhookUrl::parse(stored).as_ref(),
        Ok(&url),
        "parsing twice changed it"
    );
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    #[test]
    fn webhook_url_replays_its_seeds_and_regressions() {
        let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz");
        let mut replayed = 0;
        for folder in ["corpus", "regressions"] {
            let Ok(entries) = std::fs::read_dir(fuzz.join(folder).join("webhook_url")) else {
                continue;
            };
            for entry in entries {
                let path = entry.expect("readable fuzz folder").path();
                eprintln!("{}", path.display());
                super::webhook_url(&std::fs::read(&path).expect("readable fuzz input"));
                replayed += 1;
            }
        }
        assert!(replayed > 0, "no seeds for fuzz target webhook_url");
    }
}
