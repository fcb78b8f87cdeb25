//! HMAC-SHA256 signatures exactly as Pusher computes them: channel and user auth on the socket,
//! and request signing on the HTTP API. Every comparison is constant time.

use hmac::{KeyInit, Mac};
use md5::{Digest, Md5};
use sha2::Sha256;
use thiserror::Error;

type HmacSha256 = hmac::Hmac<Sha256>;

/// How far a request's `auth_timestamp` may be from the server's clock, as Pusher allows.
pub const TIMESTAMP_WINDOW_SECS: u64 = 600;

/// Lowercase hex HMAC-SHA256 of `message` under `secret`.
pub fn hmac_hex(secret: &str, message: &str) -> String {
    let mut mac = HmacSha256::new_from_slice(secret.as_bytes()).expect("hmac takes any key size");
    mac.update(message.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// Checks a lowercase or uppercase hex signature against HMAC-SHA256 of `message`, in
/// constant time.
pub fn verify_hmac_hex(secret: &str, message: &str, signature_hex: &str) -> bool {
    let Ok(signature) = hex::decode(signature_hex) else {
        return false;
    };
    let mut mac = HmacSha256::new_from_slice(secret.as_bytes()).expect("hmac takes any key size");
    mac.update(message.as_bytes());
    mac.verify_slice(&signature).is_ok()
}

/// Lowercase hex MD5 of a request body, as `body_md5` carries it.
pub fn body_md5_hex(body: &[u8]) -> String {
    hex::encode(Md5::digest(body))
}

/// The string a private, encrypted or presence subscription signs. `channel_data` is included
/// whenever the client sent it, for any channel kind: pusher-http-php signs it for private
/// channels too, and Pusher accepts that.
pub fn channel_auth_string(socket_id: &str, channel: &str, channel_data: Option<&str>) -> String {
    match channel_data {
        Some(data) => format!("{socket_id}:{channel}:{data}"),
        None => format!("{socket_id}:{channel}"),
    }
}

/// The string a `pusher:signin` signs.
pub fn user_auth_string(socket_id: &str, user_data: &str) -> String {
    format!("{socket_id}::user::{user_data}")
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum AuthTokenError {
    #[error("Invalid format: auth must have the format key:signature")]
    Format,
    #[error("Invalid key in auth: {0}")]
    WrongKey(String),
    #[error("Invalid signature: Expected HMAC SHA256 hex digest of {expected_string}")]
    Signature { expected_string: String },
}

/// Checks an `auth` field (`key:hexsignature`) against the connection's app key and secret.
pub fn verify_auth_token(
    auth: &str,
    app_key: &str,
    secret: &str,
    signed_string: String,
) -> Result<(), AuthTokenError> {
    let (key, signature) = auth.split_once(':').ok_or(AuthTokenError::Format)?;
    if key != app_key {
        return Err(AuthTokenError::WrongKey(crate::wire::echo(key)));
    }
    if verify_hmac_hex(secret, &signed_string, signature) {
        Ok(())
    } else {
        // The signed string holds the client's channel_data: shown cut, like any input.
        Err(AuthTokenError::Signature {
            expected_string: crate::wire::echo(&signed_string),
        })
    }
}

/// Why an HTTP API request's signature was refused; each becomes a 401 with this text.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum RequestAuthError {
    #[error("Version required")]
    VersionMissing,
    #[error("Version not supported")]
    VersionUnsupported,
    #[error("Timestamp required")]
    TimestampMissing,
    #[error(
        "Timestamp expired: Given timestamp ({given}) not within {TIMESTAMP_WINDOW_SECS}s of server time ({now})"
    )]
    TimestampExpired { given: String, now: u64 },
    #[error("Unknown auth_key")]
    KeyMissing,
    #[error("Signature required")]
    SignatureMissing,
    #[error(
        "Invalid signature: you should have sent HmacSHA256Hex({string_to_sign:?}, your_secret_key), but you sent {given:?}"
    )]
    Signature {
        string_to_sign: String,
        given: String,
    },
    #[error("body_md5 does not match the request body")]
    BodyMd5,
}

/// A request's raw query string decoded into pairs, as the HTTP API reads it before
/// verifying (`None`: not valid URL encoding).
pub fn decode_query(query: &str) -> Option<Vec<(String, String)>> {
    serde_urlencoded::from_str(query).ok()
}

/// A request to the HTTP API as the verifier needs it: decoded query pairs, not re-encoded.
pub struct SignedRequest<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub query: &'a [(String, String)],
    pub body: &'a [u8],
}

impl SignedRequest<'_> {
    pub fn param(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }

    /// `METHOD\nPATH\nsorted query without auth_signature`, values unescaped.
    pub fn string_to_sign(&self) -> String {
        let mut pairs: Vec<(String, &str)> = self
            .query
            .iter()
            .filter(|(key, _)| key != "auth_signature")
            .map(|(key, value)| (key.to_lowercase(), value.as_str()))
            .collect();
        pairs.sort();
        let query: Vec<String> = pairs
            .iter()
            .map(|(key, value)| format!("{key}={value}"))
            .collect();
        format!(
            "{}\n{}\n{}",
            self.method.to_uppercase(),
            self.path,
            query.join("&")
        )
    }

    /// Checks the parts that need no secret, in the order Pusher's verifier does, and returns
    /// the `auth_key` so the caller can look up its secret.
    pub fn preflight(&self, now_unix_secs: u64) -> Result<&str, RequestAuthError> {
        match self.param("auth_version") {
            None => return Err(RequestAuthError::VersionMissing),
            Some("1.0") => {}
            Some(_) => return Err(RequestAuthError::VersionUnsupported),
        }
        let given = self
            .param("auth_timestamp")
            .ok_or(RequestAuthError::TimestampMissing)?;
        let within_window = given
            .parse::<u64>()
            .is_ok_and(|timestamp| timestamp.abs_diff(now_unix_secs) < TIMESTAMP_WINDOW_SECS);
        if !within_window {
            return Err(RequestAuthError::TimestampExpired {
                given: given.to_owned(),
                now: now_unix_secs,
            });
        }
        self.param("auth_key").ok_or(RequestAuthError::KeyMissing)
    }

    /// Checks the parts of the signature that need no secret: present, 64 hex digits
    /// (HMAC-SHA256), and a `body_md5` that matches the body. Run before the key's secret is
    /// looked up, so a malformed request costs no catalog query; whatever `verify` accepts
    /// passes it.
    pub fn check_shape(&self) -> Result<(), RequestAuthError> {
        let signature = self
            .param("auth_signature")
            .ok_or(RequestAuthError::SignatureMissing)?;
        if signature.len() != 64 || !signature.bytes().all(|byte| byte.is_ascii_hexdigit()) {
            return Err(RequestAuthError::Signature {
                string_to_sign: self.string_to_sign(),
                given: signature.to_owned(),
            });
        }
        self.check_body_md5()
    }

    /// Checks the signature with the key's secret, then `body_md5` against the body.
    pub fn verify(&self, secret: &str) -> Result<(), RequestAuthError> {
        let given = self
            .param("auth_signature")
            .ok_or(RequestAuthError::SignatureMissing)?;
        let string_to_sign = self.string_to_sign();
        if !verify_hmac_hex(secret, &string_to_sign, given) {
            return Err(RequestAuthError::Signature {
                string_to_sign,
                given: given.to_owned(),
            });
        }
        self.check_body_md5()
    }

    fn check_body_md5(&self) -> Result<(), RequestAuthError> {
        let md5_matches = match self.param("body_md5") {
            Some(md5) => md5.eq_ignore_ascii_case(&body_md5_hex(self.body)),
            None => self.body.is_empty(),
        };
        if md5_matches {
            Ok(())
        } else {
            Err(RequestAuthError::BodyMd5)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "278d425bdf160c739803";
    const SECRET: &str = "7ad3773142a6692b25b8";

    #[test]
    fn channel_and_user_vectors_match_pusher() {
        assert_eq!(
            hmac_hex(
                SECRET,
                &channel_auth_string("1234.1234", "private-foobar", None)
            ),
            "58df8b0c36d6982b82c3ecf6b4662e34fe8c25bba48f5369f135bf843651c3a4"
        );
        assert_eq!(
            hmac_hex(SECRET, &user_auth_string("1234.1234", r#"{"id":"12345"}"#)),
            "4708d583dada6a56435fb8bc611c77c359a31eebde13337c16ab43aa6de336ba"
        );
        let presence = channel_auth_string(
            "1234.1234",
            "presence-foobar",
            Some(r#"{"user_id":10,"user_info":{"name":"Mr. Channels"}}"#),
        );
        assert_eq!(
            hmac_hex(SECRET, &presence),
            "31935e7d86dba64c2a90aed31fdc61869f9b22ba9d8863bba239c03ca481bc80"
        );
    }

    #[test]
    fn auth_tokens_check_key_and_signature() {
        let signed = || channel_auth_string("1234.1234", "private-foobar", None);
        let good =
            format!("{KEY}:58df8b0c36d6982b82c3ecf6b4662e34fe8c25bba48f5369f135bf843651c3a4");
        assert_eq!(verify_auth_token(&good, KEY, SECRET, signed()), Ok(()));
        assert_eq!(
            verify_auth_token("nocolon", KEY, SECRET, signed()),
            Err(AuthTokenError::Format)
        );
        assert!(matches!(
            verify_auth_token("other:00", KEY, SECRET, signed()),
            Err(AuthTokenError::WrongKey(_))
        ));
        assert!(matches!(
            verify_auth_token(&format!("{KEY}:zz"), KEY, SECRET, signed()),
            Err(AuthTokenError::Signature { .. })
        ));
    }

    fn worked_example_query() -> Vec<(String, String)> {
        [
            ("auth_key", KEY),
            ("auth_timestamp", "1353088179"),
            ("auth_version", "1.0"),
            ("body_md5", "ec365a775a4cd0599faeb73354201b6f"),
            (
                "auth_signature",
                "da454824c97ba181a32ccc17a72625ba02771f50b50e1e7430e47a1f3f457e6c",
            ),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }

    const BODY: &str = r#"{"name":"foo","channels":["project-3"],"data":"{\"some\":\"data\"}"}"#;

    #[test]
    fn request_signature_worked_example_verifies() {
        let query = worked_example_query();
        let request = SignedRequest {
            method: "POST",
            path: "/apps/3/events",
            query: &query,
            body: BODY.as_bytes(),
        };
        assert_eq!(
            body_md5_hex(BODY.as_bytes()),
            "ec365a775a4cd0599faeb73354201b6f"
        );
        assert_eq!(request.preflight(1353088179 + 599), Ok(KEY));
        assert_eq!(request.verify(SECRET), Ok(()));
    }

    #[test]
    fn request_signature_rejects_tampering() {
        let query = worked_example_query();
        let tampered = SignedRequest {
            method: "POST",
            path: "/apps/3/events",
            query: &query,
            body: b"{}",
        };
        assert_eq!(tampered.verify(SECRET), Err(RequestAuthError::BodyMd5));
        let other_path = SignedRequest {
            method: "POST",
            path: "/apps/4/events",
            query: &query,
            body: BODY.as_bytes(),
        };
        assert!(matches!(
            other_path.verify(SECRET),
            Err(RequestAuthError::Signature { .. })
        ));
        assert!(matches!(
            other_path.preflight(1353088179 + 600),
            Err(RequestAuthError::TimestampExpired { .. })
        ));
        let no_version: Vec<_> = query
            .iter()
            .filter(|(k, _)| k != "auth_version")
            .cloned()
            .collect();
        let request = SignedRequest {
            method: "POST",
            path: "/apps/3/events",
            query: &no_version,
            body: b"",
        };
        assert_eq!(
            request.preflight(1353088179),
            Err(RequestAuthError::VersionMissing)
        );
    }
}
