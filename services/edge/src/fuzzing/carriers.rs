//! The `cursor` and `subs` targets: what a carrier client sends in its URL, before any
//! session is looked up.

use std::time::Instant;

use protocol::names::{AppKey, ChannelKind, ChannelName, SocketId};
use protocol::session::{Credentials, Output, Session, SessionConfig};
use protocol::wire::ChannelPosition;

use crate::carriers::cursor::Cursor;
use crate::carriers::routes::parse_subs;
use crate::carriers::session::{frame_channel, subscribe_frame};

const SECRET: &str = "fuzz-secret";

/// A cursor as a client sends it back (`cursor=` or `Last-Event-ID`). Decoding never panics,
/// a decoded cursor names a valid socket id, and re-encoding it gives a cursor that verifies
/// under its secret only.
pub fn cursor(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let verified = Cursor::decode(text, SECRET);
    let Some((cursor, payload, signature)) = Cursor::decode_unverified(text) else {
        assert!(verified.is_none(), "verified a cursor that does not decode");
        return;
    };
    assert_eq!(format!("{payload}.{signature}"), text);
    if let Some(verified) = verified {
        assert_eq!(verified, cursor);
    }
    SocketId::parse(&cursor.socket_id).expect("a decoded cursor names a valid socket id");
    let encoded = cursor.encode(SECRET);
    assert_eq!(Cursor::decode(&encoded, SECRET).as_ref(), Some(&cursor));
    assert_eq!(Cursor::decode(&encoded, "another-secret"), None);
}

/// The `subs` parameter, then each subscription as the session is fed it: the subscribe frame
/// built for it names its channel, and the protocol session reads it as a subscribe to that
/// channel, resuming from the cursor's position for it.
pub fn subs(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(subs) = parse_subs(text) else {
        return;
    };
    let mut cursor = Cursor {
        socket_id: "1.2".into(),
        ..Cursor::default()
    };
    for (serial, sub) in (0u64..).zip(&subs) {
        cursor
            .channels
            .insert(sub.channel.clone(), ("fuzz-epoch".into(), serial));
    }
    let mut session = session();
    for sub in subs
        .iter()
        .take(SessionConfig::pusher_defaults().max_channels)
    {
        let frame = subscribe_frame(sub, &cursor);
        assert_eq!(frame_channel(&frame).as_ref(), Some(&sub.channel));
        let outputs = session.on_text(&frame.to_string(), Instant::now());
        let public = ChannelName::parse(&sub.channel)
            .ok()
            .filter(|channel| channel.kind() == ChannelKind::Public);
        let Some(channel) = public else {
            assert!(
                !outputs
                    .iter()
                    .any(|output| matches!(output, Output::Subscribe { .. })),
                "subscribed to {:?} without a signature",
                sub.channel
            );
            continue;
        };
        let (epoch, serial) = cursor.channels[&sub.channel].clone();
        let expected = Output::Subscribe {
            channel,
            member: None,
            resume: Some(ChannelPosition { epoch, serial }),
        };
        assert_eq!(outputs, [expected]);
    }
}

fn session() -> Session {
    let credentials = Credentials {
        key: AppKey::parse("fuzz-key").expect("a valid key"),
        secret: SECRET.into(),
    };
    let socket_id = SocketId::parse("1.2").expect("a valid socket id");
    let config = SessionConfig::pusher_defaults();
    Session::new(socket_id, credentials, config, Instant::now()).0
}
