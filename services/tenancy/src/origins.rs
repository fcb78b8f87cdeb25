//! The origins an app lets browsers connect from: patterns parsed and normalised once (at
//! the control plane's API), and the one check the edge makes against a request's `Origin`
//! header. Pure: no I/O.
//!
//! A pattern is `scheme://host[:port]` (http or https, lowercase, a default port dropped) or
//! `scheme://*.domain[:port]`, which matches any subdomain of `domain` but not `domain`
//! itself. An empty list allows every origin.
//!
//! A request without an `Origin` header is allowed: browsers send one on every WebSocket
//! handshake and every cross-origin request, so only non-browser clients (which could send any
//! `Origin` they like) and pages served by the edge itself come without one. `Origin: null`
//! (sandboxed frames, `file:` pages) matches no pattern.

/// Most patterns one app may list (the database checks the same bound).
pub const MAX_ALLOWED_ORIGINS: usize = 100;
/// Longest pattern, in bytes: a 253-byte host name with scheme and port fits.
pub const MAX_ORIGIN_BYTES: usize = 300;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OriginError {
    #[error(
        "origin {0:?} must look like https://example.com, http://localhost:8080 or https://*.example.com (no path)"
    )]
    Malformed(String),
    #[error("at most {MAX_ALLOWED_ORIGINS} allowed origins")]
    TooMany,
}

/// An app's allowed origins, normalised and deduplicated; empty allows any origin.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllowedOrigins(Vec<String>);

impl AllowedOrigins {
    /// Any origin.
    pub fn any() -> Self {
        Self(Vec::new())
    }

    /// Parses and normalises each pattern, dropping repeats, keeping the first order.
    pub fn parse<S: AsRef<str>>(patterns: &[S]) -> Result<Self, OriginError> {
        if patterns.len() > MAX_ALLOWED_ORIGINS {
            return Err(OriginError::TooMany);
        }
        let mut normalised: Vec<String> = Vec::with_capacity(patterns.len());
        for pattern in patterns {
            let pattern = normalise(pattern.as_ref(), true)
                .ok_or_else(|| OriginError::Malformed(shorten(pattern.as_ref())))?;
            if !normalised.contains(&pattern) {
                normalised.push(pattern);
            }
        }
        Ok(Self(normalised))
    }

    /// Patterns as stored (from the database), which the API normalised before writing them;
    /// one that no longer parses is dropped.
    pub fn from_stored(patterns: Vec<String>) -> Self {
        let kept = patterns
            .iter()
            .filter_map(|pattern| normalise(pattern, true))
            .take(MAX_ALLOWED_ORIGINS)
            .collect();
        Self(kept)
    }

    pub fn as_slice(&self) -> &[String] {
        &self.0
    }

    pub fn is_any(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether a request with this `Origin` header (absent: `None`) may connect.
    pub fn allows(&self, origin: Option<&str>) -> bool {
        let Some(origin) = origin else {
            return true;
        };
        if self.0.is_empty() {
            return true;
        }
        let Some(origin) = normalise(origin, false) else {
            return false;
        };
        self.0.iter().any(|pattern| matches(pattern, &origin))
    }
}

fn matches(pattern: &str, origin: &str) -> bool {
    let Some((scheme, rest)) = pattern.split_once("://*.") else {
        return pattern == origin;
    };
    let Some(origin_rest) = origin
        .strip_prefix(scheme)
        .and_then(|rest| rest.strip_prefix("://"))
    else {
        return false;
    };
    // `rest` is `domain[:port]`; the origin needs at least one label before it.
    origin_rest
        .strip_suffix(rest)
        .is_some_and(|labels| labels.len() > 1 && labels.ends_with('.'))
}

/// `scheme://host[:port]` in lowercase without a default port, or `None` when malformed.
/// With `wildcard`, the host may start with `*.`.
fn normalise(text: &str, wildcard: bool) -> Option<String> {
    if text.len() > MAX_ORIGIN_BYTES {
        return None;
    }
    let text = text.trim().to_ascii_lowercase();
    let text = text.strip_suffix('/').unwrap_or(&text);
    let (scheme, authority) = text.split_once("://")?;
    let default_port = match scheme {
        "https" => "443",
        "http" => "80",
        _ => return None,
    };
    let (host, port) = split_port(authority)?;
    let bare_host = match host.strip_prefix("*.") {
        Some(domain) if wildcard => domain,
        _ => host,
    };
    if !valid_host(bare_host) {
        return None;
    }
    match port {
        Some(port) if port != default_port => Some(format!("{scheme}://{host}:{port}")),
        _ => Some(format!("{scheme}://{host}")),
    }
}

/// The host and the port (digits, 1 to 65535), IPv6 literals in brackets.
fn split_port(authority: &str) -> Option<(&str, Option<&str>)> {
    let (host, port) = if authority.starts_with('[') {
        let end = authority.find(']')?;
        let (host, rest) = authority.split_at(end + 1);
        match rest {
            "" => (host, None),
            _ => (host, Some(rest.strip_prefix(':')?)),
        }
    } else {
        match authority.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        }
    };
    if let Some(port) = port {
        let number: u32 = port.parse().ok()?;
        if !(1..=65_535).contains(&number) || !port.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
    }
    Some((host, port))
}

fn valid_host(host: &str) -> bool {
    if let Some(inner) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        return inner.parse::<std::net::Ipv6Addr>().is_ok();
    }
    !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

/// A refused pattern quoted in an error, cut so an error stays short.
fn shorten(text: &str) -> String {
    text.chars().take(100).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn origins(patterns: &[&str]) -> AllowedOrigins {
        AllowedOrigins::parse(patterns).unwrap()
    }

    #[test]
    fn patterns_are_normalised_and_deduplicated() {
        let parsed = origins(&[
            "HTTPS://App.Example.com:443/",
            "https://app.example.com",
            "http://localhost:8080",
            "https://*.example.org",
            "http://[::1]:3000",
        ]);
        assert_eq!(
            parsed.as_slice(),
            [
                "https://app.example.com",
                "http://localhost:8080",
                "https://*.example.org",
                "http://[::1]:3000"
            ]
        );
    }

    #[test]
    fn malformed_patterns_are_refused() {
        for bad in [
            "",
            "example.com",
            "ftp://example.com",
            "https://",
            "https://example.com/path",
            "https://exa mple.com",
            "https://example.com:0",
            "https://example.com:99999",
            "https://example.com:+80",
            "https://*",
            "https://a.*.example.com",
            "https://-bad.example.com",
            "null",
        ] {
            assert!(AllowedOrigins::parse(&[bad]).is_err(), "{bad:?}");
        }
        let many: Vec<String> = (0..=MAX_ALLOWED_ORIGINS)
            .map(|n| format!("https://a{n}.example.com"))
            .collect();
        assert_eq!(AllowedOrigins::parse(&many), Err(OriginError::TooMany));
    }

    #[test]
    fn origins_are_checked_against_the_list() {
        let list = origins(&["https://app.example.com", "https://*.example.org:8443"]);
        assert!(list.allows(Some("https://app.example.com")));
        assert!(list.allows(Some("HTTPS://APP.example.com:443")));
        assert!(list.allows(Some("https://a.b.example.org:8443")));
        assert!(list.allows(None), "non-browser clients send no Origin");
        for refused in [
            "http://app.example.com",
            "https://evil.com",
            "https://app.example.com.evil.com",
            "https://example.org:8443",
            "https://xexample.org:8443",
            "https://a.example.org",
            "null",
            "garbage",
        ] {
            assert!(!list.allows(Some(refused)), "{refused}");
        }
        assert!(AllowedOrigins::any().allows(Some("null")));
        assert!(AllowedOrigins::any().allows(Some("https://anything.example")));
    }

    #[test]
    fn stored_patterns_that_do_not_parse_are_dropped() {
        let stored = AllowedOrigins::from_stored(vec!["nope".into(), "https://a.com".into()]);
        assert_eq!(stored.as_slice(), ["https://a.com"]);
    }
}
