//! The cursor our HTTP carriers send after every frame and clients send back: opaque to
//! clients, `base64url(JSON).signature`. Pure, so a fuzz target can feed it any bytes.
//!
//! The JSON is `{"s": socket_id, "i": incarnation, "n": frame number, "e": expiry, "c":
//! {channel: [epoch, serial]}}`: which session, which incarnation of it (a session rebuilt
//! on another edge is a new one) and the number of the last frame delivered in it, so the
//! edge that holds that incarnation re-sends exactly what followed; and the position in
//! every channel, so any other edge rebuilds the session and resumes each channel from its
//! history. The signature (HMAC-SHA256 under the app key's secret, over the key and the
//! payload, truncated to 128 bits) makes a cursor proof of owning that incarnation; the
//! expiry (Unix seconds) makes a leaked one worthless after a while.
//!
//! A cursor may be followed by a delta, `full~delta` (see `delta`): what the frames after
//! the full cursor changed (how many frames, which channels' serials grew by how much). The
//! signed part proves the session; the delta, unsigned, only moves positions forward, which
//! can hurt nobody but the client that edits it (it would skip its own frames). So a carrier
//! signs a full cursor now and then and sends a few bytes per frame in between.

use std::collections::BTreeMap;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};

use crate::names::SocketId;

/// Hex characters of the HMAC kept in a cursor (128 bits).
pub const SIGNATURE_HEX: usize = 32;
/// The longest cursor text read: a cursor names at most a plan's channels per connection,
/// so anything longer is not one of ours.
pub const MAX_CURSOR_LEN: usize = 64 * 1024;
/// The longest incarnation accepted (ours are 16 hex digits).
const MAX_INCARNATION_LEN: usize = 64;
/// What separates a full cursor from its delta (never in base64url nor in the signature).
pub const DELTA_MARK: char = '~';

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cursor {
    #[serde(rename = "s")]
    pub socket_id: String,
    #[serde(rename = "i")]
    pub incarnation: String,
    /// The number of the last frame delivered in this incarnation (0: none yet).
    #[serde(rename = "n")]
    pub frame: u64,
    /// Unix seconds after which the cursor proves nothing.
    #[serde(rename = "e")]
    pub expires: u64,
    /// Channel → (epoch, serial) of the last position the client was given.
    #[serde(rename = "c", default)]
    pub channels: BTreeMap<String, (String, u64)>,
}

/// Why a cursor was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CursorError {
    #[error("the cursor is malformed")]
    Malformed,
    #[error("the cursor is not signed for this key")]
    BadSignature,
    #[error("the cursor has expired")]
    Expired,
}

impl Cursor {
    /// The cursor as sent: `base64url(JSON).signature`, signed for `key` with its secret.
    pub fn encode(&self, key: &str, secret: &str) -> String {
        let json = serde_json::to_vec(self).expect("cursors serialise");
        let payload = URL_SAFE_NO_PAD.encode(json);
        let signature = sign(key, secret, &payload);
        format!("{payload}.{signature}")
    }

    /// The session the cursor names, as a socket id (checked by `decode_unverified`).
    pub fn session(&self) -> SocketId {
        SocketId::parse(&self.socket_id).expect("decoded cursors name a valid socket id")
    }
}

/// The delta from `base` to the position after frame `frame` with `channels` positions, as
/// sent after a full cursor: `~F` (frames since `base`) then `.I.S` for each of `base`'s
/// channels (by index in its order) whose serial grew by `S`. `None` when a delta cannot say
/// it (a channel that `base` does not have, or lost, a new epoch, a serial that went down, a
/// frame before `base`'s): then a new full cursor is due.
pub fn delta(
    base: &Cursor,
    frame: u64,
    channels: &BTreeMap<String, (String, u64)>,
) -> Option<String> {
    use std::fmt::Write;
    if channels.len() != base.channels.len() {
        return None;
    }
    let mut text = format!("{DELTA_MARK}{}", frame.checked_sub(base.frame)?);
    for (index, ((name, (epoch, serial)), (now_name, (now_epoch, now_serial)))) in
        base.channels.iter().zip(channels).enumerate()
    {
        if name != now_name || epoch != now_epoch {
            return None;
        }
        let grown = now_serial.checked_sub(*serial)?;
        if grown > 0 {
            write!(text, ".{index}.{grown}").expect("writing to a string");
        }
    }
    Some(text)
}

/// Applies a delta (`F` then `.I.S` pairs, without the mark) to `cursor`.
fn apply_delta(cursor: &mut Cursor, delta: &str) -> Result<(), CursorError> {
    let mut parts = delta.split('.');
    let number = |part: Option<&str>| -> Result<u64, CursorError> {
        let part = part.ok_or(CursorError::Malformed)?;
        if part.is_empty() || !part.bytes().all(|byte| byte.is_ascii_digit()) {
            return Err(CursorError::Malformed);
        }
        part.parse().map_err(|_| CursorError::Malformed)
    };
    cursor.frame = cursor
        .frame
        .checked_add(number(parts.next())?)
        .ok_or(CursorError::Malformed)?;
    let mut serials: Vec<&mut u64> = cursor.channels.values_mut().map(|(_, s)| s).collect();
    // Indices strictly increase: each channel at most once, and the work is bounded by them.
    let mut next_index = 0;
    while let Some(index) = parts.next() {
        let index = usize::try_from(number(Some(index))?).map_err(|_| CursorError::Malformed)?;
        let grown = number(parts.next())?;
        if index < next_index {
            return Err(CursorError::Malformed);
        }
        let serial = serials.get_mut(index).ok_or(CursorError::Malformed)?;
        **serial = serial.checked_add(grown).ok_or(CursorError::Malformed)?;
        next_index = index + 1;
    }
    Ok(())
}

/// Reads a cursor without checking its signature or expiry: only to learn which session it
/// claims, whose secret then verifies it (`verify`).
pub fn decode_unverified(text: &str) -> Result<Cursor, CursorError> {
    split(text).map(|(cursor, _, _)| cursor)
}

/// Reads a cursor signed for `key` under `secret` that has not expired at `now_unix_secs`.
pub fn verify(
    text: &str,
    key: &str,
    secret: &str,
    now_unix_secs: u64,
) -> Result<Cursor, CursorError> {
    let (cursor, payload, signature) = split(text)?;
    if !signature_matches(&sign(key, secret, payload), signature) {
        return Err(CursorError::BadSignature);
    }
    if cursor.expires < now_unix_secs {
        return Err(CursorError::Expired);
    }
    Ok(cursor)
}

/// The cursor (its delta applied), its signed payload and its signature.
fn split(text: &str) -> Result<(Cursor, &str, &str), CursorError> {
    if text.len() > MAX_CURSOR_LEN {
        return Err(CursorError::Malformed);
    }
    let (full, delta) = match text.split_once(DELTA_MARK) {
        Some((full, delta)) => (full, Some(delta)),
        None => (text, None),
    };
    let (payload, signature) = full.split_once('.').ok_or(CursorError::Malformed)?;
    if signature.len() != SIGNATURE_HEX {
        return Err(CursorError::Malformed);
    }
    let json = URL_SAFE_NO_PAD
        .decode(payload)
        .map_err(|_| CursorError::Malformed)?;
    let cursor: Cursor = serde_json::from_slice(&json).map_err(|_| CursorError::Malformed)?;
    SocketId::parse(&cursor.socket_id).map_err(|_| CursorError::Malformed)?;
    if cursor.incarnation.is_empty() || cursor.incarnation.len() > MAX_INCARNATION_LEN {
        return Err(CursorError::Malformed);
    }
    let mut cursor = cursor;
    if let Some(delta) = delta {
        apply_delta(&mut cursor, delta)?;
    }
    Ok((cursor, payload, signature))
}

fn sign(key: &str, secret: &str, payload: &str) -> String {
    // The key is signed too: one app's two keys never accept each other's cursors.
    let message = format!("switchboard-cursor:{}:{key}:{payload}", key.len());
    let mut mac = crate::sign::hmac_hex(secret, &message);
    mac.truncate(SIGNATURE_HEX);
    mac
}

/// Constant-time comparison of two signatures.
fn signature_matches(expected: &str, given: &str) -> bool {
    expected.len() == given.len()
        && expected
            .bytes()
            .zip(given.bytes())
            .fold(0u8, |diff, (a, b)| diff | (a ^ b))
            == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cursor() -> Cursor {
        let mut cursor = Cursor {
            socket_id: "1.2".into(),
            incarnation: "abc".into(),
            frame: 7,
            expires: 1_000,
            ..Cursor::default()
        };
        cursor.channels.insert("news".into(), ("e1".into(), 42));
        cursor
    }

    #[test]
    fn a_cursor_round_trips_until_it_expires() {
        let text = cursor().encode("key", "secret");
        assert_eq!(verify(&text, "key", "secret", 999), Ok(cursor()));
        assert_eq!(verify(&text, "key", "secret", 1_000), Ok(cursor()));
        assert_eq!(
            verify(&text, "key", "secret", 1_001),
            Err(CursorError::Expired)
        );
        assert_eq!(decode_unverified(&text), Ok(cursor()));
    }

    #[test]
    fn a_cursor_is_bound_to_its_key_and_secret() {
        let text = cursor().encode("key", "secret");
        assert_eq!(
            verify(&text, "key", "other", 0),
            Err(CursorError::BadSignature)
        );
        assert_eq!(
            verify(&text, "key2", "secret", 0),
            Err(CursorError::BadSignature)
        );
    }

    #[test]
    fn a_forged_or_edited_cursor_is_refused() {
        let text = cursor().encode("key", "secret");
        let (payload, _) = text.split_once('.').unwrap();
        let forged = format!("{payload}.{}", "0".repeat(SIGNATURE_HEX));
        assert_eq!(
            verify(&forged, "key", "secret", 0),
            Err(CursorError::BadSignature)
        );
        let mut later = cursor();
        later.expires = u64::MAX;
        let (later_payload, _) = later
            .encode("key", "other")
            .split_once('.')
            .map(|(p, s)| (p.to_owned(), s.to_owned()))
            .unwrap();
        let (_, signature) = text.split_once('.').unwrap();
        let edited = format!("{later_payload}.{signature}");
        assert_eq!(
            verify(&edited, "key", "secret", 0),
            Err(CursorError::BadSignature)
        );
    }

    #[test]
    fn a_delta_moves_a_signed_cursor_forward() {
        let mut base = cursor();
        base.channels.insert("other".into(), ("e2".into(), 5));
        let text = base.encode("key", "secret");
        let mut later = base.channels.clone();
        later.get_mut("other").unwrap().1 = 9;
        let delta = delta(&base, 10, &later).unwrap();
        assert_eq!(delta, "~3.1.4");
        let moved = verify(&format!("{text}{delta}"), "key", "secret", 0).unwrap();
        assert_eq!(moved.frame, 10);
        assert_eq!(moved.channels, later);
        // Unchanged positions: only the frame count.
        assert_eq!(
            super::delta(&base, 7, &base.channels).as_deref(),
            Some("~0")
        );
        // The signature still binds the full part.
        assert_eq!(
            verify(&format!("{text}{delta}"), "key", "other", 0),
            Err(CursorError::BadSignature)
        );
    }

    #[test]
    fn what_a_delta_cannot_say_needs_a_full_cursor() {
        let base = cursor();
        let mut new_epoch = base.channels.clone();
        new_epoch.insert("news".into(), ("e2".into(), 43));
        let mut new_channel = base.channels.clone();
        new_channel.insert("more".into(), ("e1".into(), 1));
        let mut lower = base.channels.clone();
        lower.insert("news".into(), ("e1".into(), 41));
        for channels in [new_epoch, new_channel, lower, BTreeMap::new()] {
            assert_eq!(delta(&base, 8, &channels), None, "{channels:?}");
        }
        assert_eq!(
            delta(&base, 6, &base.channels),
            None,
            "a frame before the base's"
        );
    }

    #[test]
    fn a_bad_delta_is_malformed() {
        let text = cursor().encode("key", "secret");
        for delta in [
            "~",
            "~x",
            "~1.",
            "~1.0",
            "~1.1.1",
            "~1.0.1.0.1",
            "~-1",
            "~1.0.+1",
            "~1~2",
            "~18446744073709551615",
        ] {
            assert_eq!(
                verify(&format!("{text}{delta}"), "key", "secret", 0),
                Err(CursorError::Malformed),
                "{delta}"
            );
        }
    }

    #[test]
    fn garbage_is_malformed_never_a_panic() {
        let long = "a".repeat(MAX_CURSOR_LEN + 1);
        let bad_socket = URL_SAFE_NO_PAD.encode(br#"{"s":"x","i":"a","n":1,"e":1}"#);
        for text in [
            "",
            ".",
            "garbage",
            "a.b",
            &long,
            &format!("{bad_socket}.{}", "0".repeat(SIGNATURE_HEX)),
            &format!("!!.{}", "0".repeat(SIGNATURE_HEX)),
        ] {
            assert_eq!(decode_unverified(text), Err(CursorError::Malformed));
            assert_eq!(
                verify(text, "key", "secret", 0),
                Err(CursorError::Malformed)
            );
        }
    }
}
