//! The cursor our HTTP carriers send after every frame and clients send back: opaque to
//! clients, `base64url(JSON).signature`.
//!
//! The JSON is `{"s": socket_id, "i": incarnation, "n": frame number, "c": {channel: [epoch,
//! serial]}}`: which session, which incarnation of it (a session rebuilt on another edge is a
//! new one) and the number of the last frame delivered in it, so the edge that holds that
//! incarnation re-sends exactly what followed; and the position in every channel, so any
//! other edge rebuilds the session and resumes each channel from its history. The signature
//! (HMAC-SHA256 under the app key's secret, truncated to 128 bits) makes a cursor proof of
//! owning the session: without one, nobody attaches to a live session or posts to it.

use std::collections::BTreeMap;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use protocol::names::SocketId;
use serde::{Deserialize, Serialize};

/// Hex characters of the HMAC kept in a cursor (128 bits).
const SIGNATURE_HEX: usize = 32;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Cursor {
    #[serde(rename = "s")]
    pub socket_id: String,
    #[serde(rename = "i")]
    pub incarnation: String,
    /// The number of the last frame delivered in this incarnation (0: none yet).
    #[serde(rename = "n")]
    pub frame: u64,
    /// Channel → (epoch, serial) of the last position the client was given.
    #[serde(rename = "c", default)]
    pub channels: BTreeMap<String, (String, u64)>,
}

impl Cursor {
    /// The cursor as sent: `base64url(JSON).signature`.
    pub fn encode(&self, secret: &str) -> String {
        let json = serde_json::to_vec(self).expect("cursors serialise");
        let payload = URL_SAFE_NO_PAD.encode(json);
        let signature = sign(secret, &payload);
        format!("{payload}.{signature}")
    }

    /// Reads a cursor without checking its signature (its channel positions are only a
    /// request to resume, which re-authorised subscriptions make harmless).
    pub fn decode_unverified(text: &str) -> Option<(Self, &str, &str)> {
        let (payload, signature) = text.split_once('.')?;
        let json = URL_SAFE_NO_PAD.decode(payload).ok()?;
        let cursor: Cursor = serde_json::from_slice(&json).ok()?;
        SocketId::parse(&cursor.socket_id).ok()?;
        Some((cursor, payload, signature))
    }

    /// Reads a cursor whose signature is valid under `secret`.
    pub fn decode(text: &str, secret: &str) -> Option<Self> {
        let (cursor, payload, signature) = Self::decode_unverified(text)?;
        verify(secret, payload, signature).then_some(cursor)
    }
}

fn sign(secret: &str, payload: &str) -> String {
    let mut mac = protocol::sign::hmac_hex(secret, &format!("switchboard-cursor:{payload}"));
    mac.truncate(SIGNATURE_HEX);
    mac
}

/// Constant-time comparison of the signature.
fn verify(secret: &str, payload: &str, signature: &str) -> bool {
    let expected = sign(secret, payload);
    expected.len() == signature.len()
        && expected
            .bytes()
            .zip(signature.bytes())
            .fold(0u8, |diff, (a, b)| diff | (a ^ b))
            == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_round_trips_and_a_forged_one_is_refused() {
        let mut cursor = Cursor {
            socket_id: "1.2".into(),
            incarnation: "abc".into(),
            frame: 7,
            ..Cursor::default()
        };
        cursor.channels.insert("news".into(), ("e1".into(), 42));
        let text = cursor.encode("secret");
        assert_eq!(Cursor::decode(&text, "secret"), Some(cursor.clone()));
        assert_eq!(Cursor::decode(&text, "other"), None);
        let (payload, _) = text.split_once('.').unwrap();
        let forged = format!("{payload}.{}", "0".repeat(SIGNATURE_HEX));
        assert_eq!(Cursor::decode(&forged, "secret"), None);
        assert_eq!(
            Cursor::decode_unverified(&forged).map(|(c, _, _)| c),
            Some(cursor)
        );
        assert!(Cursor::decode_unverified("garbage").is_none());
    }
}
