//! The session's bounds and its first attachment, without a server.

use serde_json::json;

use super::*;

fn session(max_channels: usize) -> Arc<CarrierSession> {
    let socket_id = SocketId::parse("1.2").unwrap();
    let (inbound, _) = mpsc::channel(1);
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
