//! The `request_signature` target: an HTTP API request as the edge's `http_api::authenticate`
//! checks it (query decoding, `preflight` and `check_shape` before it has the key's secret,
//! `verify` after), and the socket's `auth` tokens.
//!
//! Input: the method, the path and the raw query string on the first three lines, then the
//! body. The fuzzer cannot forge an HMAC, so besides the request as given (which must never
//! verify unless its signature is right) the harness signs it as a server library would and
//! checks that the signed request verifies and that every change to it does not.

use crate::sign::{
    AuthTokenError, RequestAuthError, SignedRequest, body_md5_hex, decode_query, hmac_hex,
    verify_auth_token, verify_hmac_hex,
};

const KEY: &str = "fuzz-key";
const SECRET: &str = "fuzz-secret";
/// The server's clock, fixed so the timestamp window is reproducible.
const NOW_UNIX_SECS: u64 = 1_700_000_000;

pub fn request_signature(data: &[u8]) {
    let mut lines = data.splitn(4, |&byte| byte == b'\n');
    let (Some(method), Some(path), Some(query)) = (lines.next(), lines.next(), lines.next()) else {
        return;
    };
    let body = lines.next().unwrap_or_default();
    let (Ok(method), Ok(path), Ok(query)) = (
        std::str::from_utf8(method),
        std::str::from_utf8(path),
        std::str::from_utf8(query),
    ) else {
        return;
    };
    auth_token(query);
    // Decoded as `http_api::authenticate` decodes it.
    let Some(query) = decode_query(query) else {
        return;
    };
    let given = SignedRequest {
        method,
        path,
        query: &query,
        body,
    };
    if let Ok(key) = given.preflight(NOW_UNIX_SECS) {
        assert_eq!(Some(key), given.param("auth_key"));
    }
    if given.verify(SECRET).is_ok() {
        let signature = given.param("auth_signature").unwrap_or_default();
        assert!(verify_hmac_hex(SECRET, &given.string_to_sign(), signature));
        // The secret-free check runs first: it must never refuse what would verify.
        assert_eq!(
            given.check_shape(),
            Ok(()),
            "check_shape refused a signed request"
        );
    }
    check_signed_request_verifies_and_changes_do_not(method, path, &query, body);
}

/// The query signed as pusher-http-node signs it: `body_md5`, then `auth_signature` over the
/// string to sign.
fn sign(
    method: &str,
    path: &str,
    query: &[(String, String)],
    body: &[u8],
) -> Vec<(String, String)> {
    let mut signed: Vec<(String, String)> = query
        .iter()
        .filter(|(key, _)| key != "auth_signature" && key != "body_md5")
        .cloned()
        .collect();
    signed.push(("body_md5".into(), body_md5_hex(body)));
    let string_to_sign = SignedRequest {
        method,
        path,
        query: &signed,
        body,
    }
    .string_to_sign();
    signed.push(("auth_signature".into(), hmac_hex(SECRET, &string_to_sign)));
    signed
}

fn check_signed_request_verifies_and_changes_do_not(
    method: &str,
    path: &str,
    query: &[(String, String)],
    body: &[u8],
) {
    let signed = sign(method, path, query, body);
    let request = |method, path, body| SignedRequest {
        method,
        path,
        query: &signed,
        body,
    };
    assert_eq!(request(method, path, body).check_shape(), Ok(()));
    assert_eq!(request(method, path, body).verify(SECRET), Ok(()));
    let mut longer_body = body.to_vec();
    longer_body.push(b'x');
    assert_eq!(
        request(method, path, &longer_body).check_shape(),
        Err(RequestAuthError::BodyMd5)
    );
    assert_eq!(
        request(method, path, &longer_body).verify(SECRET),
        Err(RequestAuthError::BodyMd5)
    );
    let other_path = format!("{path}/x");
    assert!(matches!(
        request(method, &other_path, body).verify(SECRET),
        Err(RequestAuthError::Signature { .. })
    ));
    assert!(matches!(
        request(method, path, body).verify("another-secret"),
        Err(RequestAuthError::Signature { .. })
    ));
}

/// An `auth` field of a subscribe or signin (`key:signature`): the given text never passes
/// unless it is the right signature, the right one passes in either case of hex, and a
/// truncated one does not.
fn auth_token(text: &str) {
    let signed = || format!("{NOW_UNIX_SECS}.1:private-fuzz");
    let expected = hmac_hex(SECRET, &signed());
    if verify_auth_token(text, KEY, SECRET, signed()).is_ok() {
        assert!(text.eq_ignore_ascii_case(&format!("{KEY}:{expected}")));
    }
    for good in [expected.clone(), expected.to_uppercase()] {
        let token = format!("{KEY}:{good}");
        assert_eq!(verify_auth_token(&token, KEY, SECRET, signed()), Ok(()));
    }
    let truncated = format!("{KEY}:{}", &expected[..expected.len() - 2]);
    assert!(matches!(
        verify_auth_token(&truncated, KEY, SECRET, signed()),
        Err(AuthTokenError::Signature { .. })
    ));
}
