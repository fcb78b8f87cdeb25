//! The body of the `webhook_url` fuzz target (`fuzz/` at the repository root holds the
//! libFuzzer binary): any text a tenant may give as a webhook's URL, under both address
//! policies. Here rather than in `fuzz/` so an ordinary `cargo test` replays every input the
//! fuzzer ever crashed on (`fuzz/regressions/webhook_url/`) and every seed. Not an API: hidden
//! from the docs.

use std::net::IpAddr;

use url::{Host, Url};

use crate::webhook_url::{
    AddressPolicy, MAX_WEBHOOK_URL_BYTES, WebhookUrl, forbidden_range, parse_webhook_url,
};

/// Parses `data` as a webhook URL under each policy. What is accepted keeps the documented
/// bound, is an http(s) URL with a host, and parses again to itself (so editing a webhook
/// never changes its URL); what `PublicOnly` accepts `AllowPrivate` accepts too, and it never
/// names a forbidden address literal, in any notation the URL parser reads.
pub fn webhook_url(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let private = parse_webhook_url(text, AddressPolicy::AllowPrivate);
    if let Ok(url) = &private {
        check_stored(url, AddressPolicy::AllowPrivate);
    }
    let Ok(public) = parse_webhook_url(text, AddressPolicy::PublicOnly) else {
        return;
    };
    check_stored(&public, AddressPolicy::PublicOnly);
    assert_eq!(
        private.as_ref(),
        Ok(&public),
        "the policies disagree on an accepted URL"
    );
    let parsed = Url::parse(public.as_str()).expect("a stored webhook url is a URL");
    let address = match parsed.host() {
        Some(Host::Ipv4(v4)) => Some(IpAddr::V4(v4)),
        Some(Host::Ipv6(v6)) => Some(IpAddr::V6(v6)),
        _ => None,
    };
    if let Some(address) = address {
        assert_eq!(
            forbidden_range(address),
            None,
            "PublicOnly accepted {address} in {:?}",
            public.as_str()
        );
    }
}

fn check_stored(url: &WebhookUrl, policy: AddressPolicy) {
    let stored = url.as_str();
    assert!(
        stored.len() <= MAX_WEBHOOK_URL_BYTES,
        "a stored webhook url of {} bytes",
        stored.len()
    );
    let parsed = Url::parse(stored).expect("a stored webhook url is a URL");
    assert!(matches!(parsed.scheme(), "http" | "https"));
    assert!(parsed.host_str().is_some_and(|host| !host.is_empty()));
    assert_eq!(
        parse_webhook_url(stored, policy).as_ref(),
        Ok(url),
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
