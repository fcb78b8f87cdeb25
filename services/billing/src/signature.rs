//! Stripe's webhook signature scheme: `Stripe-Signature: t=<unix seconds>,v1=<hex>[,v1=…]`,
//! where each `v1` is HMAC-SHA256 of `"{t}.{payload}"` under the endpoint's secret.
//!
//! Why not `stripe_webhook::Webhook::construct_event`: after checking the signature it parses
//! `data.object` into the full generated type of each event (every field Stripe marks
//! required), so an event whose object lacks one field Stripe's newest version added is
//! refused after its signature passed. We only need the event's id, type and object ids (the
//! handler re-fetches the subscription), so we check the same scheme here and read the
//! payload with `serde_json`.

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// How far a signature's timestamp may be from now, as Stripe's libraries allow.
pub const TOLERANCE_SECONDS: i64 = 300;
/// The most `v1` signatures read from one header (Stripe sends one per active secret).
const MAX_SIGNATURES: usize = 8;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("malformed Stripe-Signature header")]
    Malformed,
    #[error("no signature matches")]
    Mismatch,
    #[error("signature timestamp outside the tolerance")]
    Stale,
}

/// Checks `header` against `payload` at `now` (unix seconds).
pub fn verify(payload: &[u8], header: &str, secret: &str, now: i64) -> Result<(), SignatureError> {
    let mut timestamp = None;
    let mut signatures = Vec::new();
    for part in header.split(',').take(32) {
        let (name, value) = part
            .trim()
            .split_once('=')
            .ok_or(SignatureError::Malformed)?;
        match name {
            "t" => {
                timestamp = Some(
                    value
                        .parse::<i64>()
                        .map_err(|_| SignatureError::Malformed)?,
                )
            }
            "v1" if signatures.len() < MAX_SIGNATURES => {
                signatures.push(hex::decode(value).map_err(|_| SignatureError::Malformed)?)
            }
            // Other schemes (v0 is Stripe's test-mode legacy) and extra v1s are ignored.
            _ => {}
        }
    }
    let timestamp = timestamp.ok_or(SignatureError::Malformed)?;
    if signatures.is_empty() {
        return Err(SignatureError::Malformed);
    }
    let expected = mac(secret, timestamp, payload);
    let matches = signatures
        .iter()
        .any(|candidate| expected.clone().verify_slice(candidate).is_ok());
    if !matches {
        return Err(SignatureError::Mismatch);
    }
    if (now - timestamp).abs() > TOLERANCE_SECONDS {
        return Err(SignatureError::Stale);
    }
    Ok(())
}

/// The header Stripe would send for `payload` signed at `timestamp`.
pub fn sign(payload: &[u8], secret: &str, timestamp: i64) -> String {
    let signature = hex::encode(mac(secret, timestamp, payload).finalize().into_bytes());
    format!("t={timestamp},v1={signature}")
}

fn mac(secret: &str, timestamp: i64, payload: &[u8]) -> Hmac<Sha256> {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(payload);
    mac
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "whsec_test";

    #[test]
    fn a_signed_payload_verifies_within_the_tolerance_only() {
        let header = sign(b"{}", SECRET, 1_000);
        assert_eq!(verify(b"{}", &header, SECRET, 1_000 + 300), Ok(()));
        assert_eq!(
            verify(b"{}", &header, SECRET, 1_000 + 301),
            Err(SignatureError::Stale)
        );
        assert_eq!(
            verify(b"{}", &header, SECRET, 1_000 - 301),
            Err(SignatureError::Stale)
        );
    }

    #[test]
    fn another_payload_or_secret_does_not_verify() {
        let header = sign(b"{}", SECRET, 1_000);
        assert_eq!(
            verify(b"{ }", &header, SECRET, 1_000),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(b"{}", &header, "whsec_other", 1_000),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn any_of_several_signatures_may_match() {
        let good = sign(b"{}", SECRET, 1_000);
        let good_v1 = good.split_once(",v1=").unwrap().1;
        let header = format!("t=1000,v1={},v1={good_v1},v0=abc", "00".repeat(32));
        assert_eq!(verify(b"{}", &header, SECRET, 1_000), Ok(()));
    }

    #[test]
    fn malformed_headers_are_refused_without_panicking() {
        for header in [
            "",
            "t=1",
            "v1=00",
            "t=x,v1=00",
            "t=1,v1=zz",
            "garbage",
            "t=1,,v1=00",
        ] {
            assert!(verify(b"{}", header, SECRET, 1).is_err(), "{header:?}");
        }
    }
}
