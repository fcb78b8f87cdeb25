//! The `cursor` and `subs` targets: what an HTTP carrier's client sends in its URL (or its
//! `Last-Event-ID`), before any session is looked up.

use std::time::Instant;

use crate::carrier_cursor::{self, Cursor, CursorError, MAX_CURSOR_LEN};
use crate::carrier_subs::{MAX_SUBS, parse_subs};
use crate::delta::DeltaFormat;
use crate::names::{AppKey, ChannelName, SocketId};
use crate::session::{Credentials, Output, Session, SessionConfig};
use crate::wire::ChannelPosition;

const KEY: &str = "fuzz-key";
const SECRET: &str = "fuzz-secret";

/// A cursor as a client sends it back. Reading never panics; whatever verifies also decodes to
/// the same cursor and has not expired; a decoded cursor names a valid socket id; and the
/// cursor re-signed verifies under its key and secret only, until its expiry only.
pub fn cursor(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let now = 1_700_000_000;
    let verified = carrier_cursor::verify(text, KEY, SECRET, now);
    let cursor = match carrier_cursor::decode_unverified(text) {
        Ok(cursor) => cursor,
        Err(error) => {
            assert_eq!(error, CursorError::Malformed);
            assert_eq!(
                verified,
                Err(CursorError::Malformed),
                "verified what does not decode"
            );
            return;
        }
    };
    if let Ok(verified) = &verified {
        assert_eq!(verified, &cursor);
        assert!(cursor.expires >= now, "verified an expired cursor");
    }
    assert_eq!(cursor.session().as_str(), cursor.socket_id);
    let encoded = cursor.encode(KEY, SECRET);
    // Re-encoding may add what the text left to defaults (`"c":{}`), past the bound.
    if encoded.len() > MAX_CURSOR_LEN {
        return;
    }
    let at = |key, secret, now| carrier_cursor::verify(&encoded, key, secret, now);
    assert_eq!(at(KEY, SECRET, cursor.expires).as_ref(), Ok(&cursor));
    assert_eq!(at(KEY, "another-secret", 0), Err(CursorError::BadSignature));
    assert_eq!(at("another-key", SECRET, 0), Err(CursorError::BadSignature));
    if let Some(later) = cursor.expires.checked_add(1) {
        assert_eq!(at(KEY, SECRET, later), Err(CursorError::Expired));
    }
}

/// The `subs` parameter, then each subscription as a session is fed it: the protocol session
/// reads the frame built for it as a subscribe to its channel, resuming from the cursor's
/// position there, and never subscribes to a channel that needs a signature it lacks.
pub fn subs(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(subs) = parse_subs(text) else {
        return;
    };
    assert!(subs.len() <= MAX_SUBS, "{} subs accepted", subs.len());
    let mut cursor = Cursor {
        socket_id: "1.2".into(),
        ..Cursor::default()
    };
    for (serial, sub) in (0u64..).zip(&subs) {
        let position = ("fuzz-epoch".to_owned(), serial);
        cursor
            .channels
            .insert(sub.channel.as_ref().to_owned(), position);
    }
    let mut session = session();
    for sub in subs
        .iter()
        .take(SessionConfig::pusher_defaults().max_channels)
    {
        let position = cursor.channels.get(sub.channel.as_ref());
        let frame = sub.subscribe_frame(position);
        let outputs = session.on_text(&frame.to_string(), Instant::now());
        if !is_open(&sub.channel) {
            assert!(
                !outputs
                    .iter()
                    .any(|output| matches!(output, Output::Subscribe { .. })),
                "subscribed to {:?} without a signature",
                sub.channel
            );
            continue;
        }
        // The session, not `subs`, knows the delta formats: an unknown one is refused there.
        let asked = sub.delta.clone().map(serde_json::Value::String);
        let Ok(delta) = DeltaFormat::from_subscribe_data(asked.as_ref()) else {
            assert!(
                !outputs
                    .iter()
                    .any(|output| matches!(output, Output::Subscribe { .. })),
                "subscribed to {:?} with an unknown delta format",
                sub.channel
            );
            continue;
        };
        let (epoch, serial) = position.cloned().expect("every channel has a position");
        let expected = Output::Subscribe {
            channel: sub.channel.clone(),
            member: None,
            resume: Some(ChannelPosition { epoch, serial }),
            delta,
        };
        assert_eq!(outputs, [expected]);
    }
}

/// A channel anyone may subscribe to: no signature and no signed-in user needed.
fn is_open(channel: &ChannelName) -> bool {
    !channel.kind().requires_auth() && channel.server_to_user_id().is_none()
}

fn session() -> Session {
    let credentials = Credentials {
        key: AppKey::parse(KEY).expect("a valid key"),
        secret: SECRET.into(),
    };
    let socket_id = SocketId::parse("1.2").expect("a valid socket id");
    let config = SessionConfig::pusher_defaults();
    Session::new(socket_id, credentials, config, Instant::now()).0
}
