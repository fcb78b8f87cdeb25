//! The session's bounds and its first attachment, without a server.

use serde_json::json;

use super::*;

fn session(max_channels: usize) -> Arc<CarrierSession> {
    let socket_id = SocketId::parse("1.2").unwrap();
    let (inbound, _) = inbound_queue(1);
    let limits = PlanLimits {
        max_channels_per_connection: max_channels,
        ..PlanLimits::pusher_defaults()
    };
    CarrierSession::new(Spec {
        socket_id: socket_id.clone(),
        key: "key".into(),
        secret: "secret".into(),
        app_id: AppId::parse("app").unwrap(),
        limits,
        incarnation: "i".into(),
        rebuilt_from: None,
        slot: None,
        slots: crate::limits::Limits::local_for_tests(),
        outbox: Arc::new(Outbox::new(
            socket_id,
            crate::outbox::OutboxBounds::frames_for_test(16),
        )),
        inbound,
        grace: Duration::from_secs(30),
        first_poll_grace: Duration::from_secs(10),
        keepalive: Duration::from_secs(60),
        cursor_lifetime: Duration::from_secs(300),
        buffer_capacity: 16,
        buffer_max_bytes: 1024 * 1024,
    })
}

fn subscribe(channel: &str) -> Value {
    json!({"event": "pusher:subscribe", "data": {"channel": channel}})
}

#[test]
fn requested_channels_are_names_that_parse_up_to_the_plans_channels() {
    let session = session(3);
    for n in 0..1_000 {
        session.note_request(&subscribe(&format!("bad name {n}")));
        session.note_request(&subscribe(&"x".repeat(300)));
        session.note_request(&json!({"event": "pusher:subscribe", "data": "not json"}));
        session.note_request(&subscribe(&format!("good-{n}")));
    }
    let requested = session.lock().requested.clone();
    let names: HashSet<&str> = requested.iter().map(AsRef::as_ref).collect();
    assert_eq!(names, HashSet::from(["good-0", "good-1", "good-2"]));
    // Leaving one makes room for another.
    session.note_request(&json!({"event": "pusher:unsubscribe", "data": {"channel": "good-1"}}));
    session.note_request(&subscribe("late"));
    assert!(session.has_requested(&ChannelName::parse("late").unwrap()));
    assert_eq!(session.lock().requested.len(), 3);
}

#[test]
fn channel_positions_are_bounded_too() {
    let mut channels = BTreeMap::new();
    for n in 0..100 {
        let frame = format!(r#"{{"event":"e","channel":"c{n}","serial":1,"epoch":"e"}}"#);
        note_position(&mut channels, &frame, 4);
    }
    assert_eq!(channels.len(), 4);
    note_position(
        &mut channels,
        r#"{"event":"e","channel":"c0","serial":2,"epoch":"e"}"#,
        4,
    );
    assert_eq!(channels["c0"], ("e".to_owned(), 2));
}

#[tokio::test]
async fn a_new_sessions_first_attachment_never_fails() {
    let session = session(3);
    session.stop();
    // Even stopped by a racing request before its first attach, it serves (the close).
    let attachment = session.attach_first();
    assert_eq!(attachment.next, 1);
}

#[test]
fn positions_are_read_from_real_frames_without_being_fooled_by_their_data() {
    let mut channels = BTreeMap::new();
    // Data that looks like a stamp or a channel field is escaped inside its string.
    let frame = broker::stamp(
        &protocol::wire::channel_event(
            r#"ev"channel":"x"#,
            "news",
            r#"{"channel":"other","serial":9,"epoch":"zz"}"#,
            None,
        ),
        7,
        "e1",
    );
    note_position(&mut channels, &frame, 4);
    assert_eq!(channels.len(), 1);
    assert_eq!(channels["news"], ("e1".to_owned(), 7));
    // subscription_succeeded announces the position in its data.
    let succeeded = r#"{"event":"pusher_internal:subscription_succeeded","channel":"more","data":"{\"epoch\":\"e2\",\"serial\":3}"}"#;
    note_position(&mut channels, succeeded, 4);
    assert_eq!(channels["more"], ("e2".to_owned(), 3));
    // Frames without a position change nothing.
    for frame in [
        r#"{"event":"pusher:pong","data":"{}"}"#,
        r#"{"event":"member_added","channel":"news","data":"{}"}"#,
    ] {
        note_position(&mut channels, frame, 4);
    }
    assert_eq!(channels.len(), 2);
    assert_eq!(channels["news"], ("e1".to_owned(), 7));
}

#[test]
fn frames_carry_a_delta_of_the_last_full_cursor_until_a_delta_cannot_say_it() {
    let session = session(3);
    let news = ChannelName::parse("news").unwrap();
    let other = ChannelName::parse("other").unwrap();
    let event = |channel: &ChannelName, serial| {
        let frame = protocol::wire::channel_event("tick", channel.as_ref(), "x", None);
        broker::stamp(&frame, serial, "e1")
    };
    session
        .core
        .outbox
        .push_from(&news, Some(1), event(&news, 1));
    session
        .core
        .outbox
        .push_from(&news, Some(2), event(&news, 2));
    session
        .core
        .outbox
        .push_from(&other, Some(5), event(&other, 5));
    let mut context = Context::from_waker(std::task::Waker::noop());
    let mut inner = session.lock();
    session.take_from_outbox(&mut inner, &mut context);
    let sent: Vec<Sent> = inner.sent.iter().cloned().collect();
    drop(inner);
    // A new channel: a full cursor; the same channel's next serial: a delta of it.
    assert_eq!(sent[0].delta, None);
    assert_eq!(sent[1].delta.as_deref(), Some("~1.0.1"));
    assert!(Arc::ptr_eq(&sent[0].base, &sent[1].base));
    // Another new channel: a new full cursor.
    assert_eq!(sent[2].delta, None);
    assert!(!Arc::ptr_eq(&sent[1].base, &sent[2].base));
    let verify = |text: &str| carrier_cursor::verify(text, "key", "secret", 0).unwrap();
    let second = verify(&sent[1].cursor());
    assert_eq!(second.frame, 2);
    assert_eq!(second.channels["news"], ("e1".to_owned(), 2));
    let third = verify(&sent[2].cursor());
    assert_eq!(third.frame, 3);
    assert_eq!(third.channels.len(), 2);
}
