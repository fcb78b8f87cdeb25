//! An app's ICE servers (STUN and TURN) for WebRTC, and the short-lived TURN credentials of
//! the TURN REST convention (what coturn's `use-auth-secret` checks): username
//! `<expiry unix seconds>:<user id>`, credential `base64(HMAC-SHA1(secret, username))`.
//! Pure: the time is an argument.

use std::time::Duration;

use base64::Engine;
use hmac::{Hmac, KeyInit, Mac};
use protocol::names::UserId;
use serde_json::{Value, json};
use sha1::Sha1;

use crate::Secret;

/// At most this many server URLs per app.
pub const MAX_ICE_URLS: usize = 10;
pub const MAX_ICE_URL_BYTES: usize = 256;
pub const MAX_TURN_SECRET_BYTES: usize = 256;
/// How long a TURN credential handed out with a subscription is valid. A call that starts
/// within it keeps its allocation; a later one gets fresh credentials when it re-subscribes.
pub const TURN_CREDENTIAL_TTL: Duration = Duration::from_secs(12 * 3600);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IceUrlError {
    #[error("at most {MAX_ICE_URLS} ICE server URLs")]
    TooMany,
    #[error(
        "an ICE server URL must be stun:, stuns:, turn: or turns: host[:port][?transport=udp|tcp] (at most {MAX_ICE_URL_BYTES} bytes)"
    )]
    Malformed,
    #[error("the TURN secret must be 1 to {MAX_TURN_SECRET_BYTES} printable characters")]
    BadSecret,
}

/// The app's STUN/TURN URLs, validated; empty (none needed on a LAN) by default.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IceServers(Vec<String>);

impl IceServers {
    pub fn parse(urls: &[String]) -> Result<Self, IceUrlError> {
        if urls.len() > MAX_ICE_URLS {
            return Err(IceUrlError::TooMany);
        }
        let mut parsed = Vec::with_capacity(urls.len());
        for url in urls {
            if !is_ice_url(url) {
                return Err(IceUrlError::Malformed);
            }
            if !parsed.iter().any(|seen: &String| seen == url) {
                parsed.push(url.clone());
            }
        }
        Ok(Self(parsed))
    }

    /// As the control plane stored them (validated when written).
    pub fn from_stored(urls: Vec<String>) -> Self {
        Self(urls)
    }

    pub fn as_slice(&self) -> &[String] {
        &self.0
    }
}

/// Checks a TURN secret as the control plane accepts it.
pub fn check_turn_secret(secret: &str) -> Result<(), IceUrlError> {
    let printable = secret.bytes().all(|b| b.is_ascii_graphic());
    if secret.is_empty() || secret.len() > MAX_TURN_SECRET_BYTES || !printable {
        return Err(IceUrlError::BadSecret);
    }
    Ok(())
}

fn is_ice_url(url: &str) -> bool {
    let Some((scheme, rest)) = url.split_once(':') else {
        return false;
    };
    let (address, query) = match rest.split_once('?') {
        Some((address, query)) => (address, Some(query)),
        None => (rest, None),
    };
    let address_ok = !address.is_empty()
        && !address.starts_with('/')
        && address
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".-:[]_".contains(&b));
    let query_ok = match query {
        None => true,
        Some(query) => {
            matches!(scheme, "turn" | "turns") && matches!(query, "transport=udp" | "transport=tcp")
        }
    };
    url.len() <= MAX_ICE_URL_BYTES
        && matches!(scheme, "stun" | "stuns" | "turn" | "turns")
        && address_ok
        && query_ok
}

/// One TURN username and credential.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TurnCredential {
    pub username: String,
    pub credential: String,
}

/// The TURN REST credential for `user`, valid until `expiry_unix`.
pub fn turn_credential(secret: &str, user: &UserId, expiry_unix: u64) -> TurnCredential {
    let username = format!("{expiry_unix}:{user}");
    let mut mac =
        Hmac::<Sha1>::new_from_slice(secret.as_bytes()).expect("HMAC takes keys of any length");
    mac.update(username.as_bytes());
    let credential = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    TurnCredential {
        username,
        credential,
    }
}

/// An app's ICE configuration: its URLs and, for TURN, the secret shared with the TURN server.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IceSettings {
    pub servers: IceServers,
    pub turn_secret: Option<Secret>,
}

impl IceSettings {
    /// The `RTCIceServer` list for `user` at `now_unix`, as `RTCPeerConnection` takes it:
    /// the STUN URLs in one entry, the TURN URLs in another with a fresh credential. TURN URLs
    /// are left out while no TURN secret is set (they would refuse every allocation).
    /// `None` when there is nothing to announce.
    pub fn for_user(&self, user: &UserId, now_unix: u64) -> Option<Value> {
        let is_turn = |url: &&String| url.starts_with("turn:") || url.starts_with("turns:");
        let urls = self.servers.as_slice();
        let stun: Vec<&String> = urls.iter().filter(|url| !is_turn(url)).collect();
        let turn: Vec<&String> = urls.iter().filter(is_turn).collect();
        let mut servers = Vec::new();
        if !stun.is_empty() {
            servers.push(json!({ "urls": stun }));
        }
        if let (false, Some(secret)) = (turn.is_empty(), &self.turn_secret) {
            let expiry = now_unix + TURN_CREDENTIAL_TTL.as_secs();
            let credential = turn_credential(secret.expose(), user, expiry);
            servers.push(json!({
                "urls": turn,
                "username": credential.username,
                "credential": credential.credential,
            }));
        }
        (!servers.is_empty()).then_some(Value::Array(servers))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn urls(list: &[&str]) -> Vec<String> {
        list.iter().map(|url| url.to_string()).collect()
    }

    #[test]
    fn turn_credentials_follow_the_turn_rest_convention() {
        // Computed independently:
        // `echo -n "1700000000:alice" | openssl dgst -sha1 -hmac "north" -binary | base64`.
        let credential = turn_credential("north", &UserId::parse("alice").unwrap(), 1_700_000_000);
        assert_eq!(credential.username, "1700000000:alice");
        assert_eq!(credential.credential, "Cd/49soE35ICqcJF/bCTn8Z4OyE=");
    }

    #[test]
    fn stun_and_turn_urls_are_announced_apart_and_turn_only_with_a_secret() {
        let servers = IceServers::parse(&urls(&[
            "stun:stun.example.com:3478",
            "turn:turn.example.com:3478?transport=udp",
            "turns:turn.example.com:5349",
        ]))
        .unwrap();
        let user = UserId::parse("bob").unwrap();
        let without = IceSettings {
            servers: servers.clone(),
            turn_secret: None,
        };
        assert_eq!(
            without.for_user(&user, 100),
            Some(json!([{"urls":["stun:stun.example.com:3478"]}]))
        );
        let with = IceSettings {
            servers,
            turn_secret: Some(Secret::new("north")),
        };
        let announced = with.for_user(&user, 100).unwrap();
        let turn = &announced[1];
        let expiry = 100 + TURN_CREDENTIAL_TTL.as_secs();
        assert_eq!(turn["username"], format!("{expiry}:bob"));
        let expected = turn_credential("north", &user, expiry).credential;
        assert_eq!(turn["credential"], expected);
        assert_eq!(turn["urls"].as_array().unwrap().len(), 2);
        assert_eq!(IceSettings::default().for_user(&user, 100), None);
    }

    #[test]
    fn bad_urls_and_secrets_are_refused() {
        for bad in [
            "http://stun.example.com",
            "stun:",
            "stun://host",
            "stun:host?transport=udp",
            "turn:host?transport=sctp",
            "turn:ho st",
            "turn:host\n",
        ] {
            assert_eq!(
                IceServers::parse(&urls(&[bad])),
                Err(IceUrlError::Malformed),
                "{bad:?}"
            );
        }
        let many: Vec<String> = (0..11).map(|n| format!("stun:h{n}")).collect();
        assert_eq!(IceServers::parse(&many), Err(IceUrlError::TooMany));
        assert_eq!(
            IceServers::parse(&urls(&["stun:a", "stun:a"]))
                .unwrap()
                .as_slice(),
            ["stun:a"]
        );
        assert!(check_turn_secret("").is_err());
        assert!(check_turn_secret("has space").is_err());
        assert!(check_turn_secret(&"x".repeat(257)).is_err());
        assert!(check_turn_secret("fine-secret").is_ok());
    }
}
