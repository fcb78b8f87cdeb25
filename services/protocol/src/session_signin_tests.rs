//! The state machine's `pusher:signin`: signature, `user_data`, the watchlist and its limit.

use std::time::Instant;

use serde_json::{Value, json};

use crate::session::Output;
use crate::session_tests::{KEY, SECRET, SOCKET, auth_for, only_sent, send, session, subscribe};
use crate::sign::{hmac_hex, user_auth_string};

#[test]
fn signin_then_own_server_to_user_channel_only() {
    let mut session = session(Instant::now());
    let user_data = r#"{"id":"42","user_info":{"n":1}}"#;
    let auth = format!(
        "{KEY}:{}",
        hmac_hex(SECRET, &user_auth_string(SOCKET, user_data))
    );
    let out = send(
        &mut session,
        json!({"event":"pusher:signin","data":{"auth":auth,"user_data":user_data}}),
    );
    assert!(matches!(
        out.as_slice(),
        [Output::SignedIn { user, watchlist, reply }]
            if user.as_str() == "42" && watchlist.is_empty() && reply.contains("pusher:signin_success")
    ));

    assert!(matches!(
        send(&mut session, subscribe("#server-to-user-42", "", None)).as_slice(),
        [Output::Subscribe { .. }]
    ));
    let other = only_sent(&send(
        &mut session,
        subscribe("#server-to-user-43", "", None),
    ));
    assert_eq!(other[1]["event"], "pusher:subscription_error");

    // A signed-in connection may join presence without channel_data.
    let auth = auth_for("presence-r", None);
    let out = send(&mut session, subscribe("presence-r", &auth, None));
    assert!(
        matches!(out.as_slice(), [Output::Subscribe { member: Some(m), .. }] if m.user_id.as_str() == "42" && m.user_info == json!({"n":1}))
    );
}

#[test]
fn a_watchlist_over_the_limit_is_cut_to_its_first_hundred_with_error_4302() {
    let mut session = session(Instant::now());
    let watchlist: Vec<String> = (0..101).map(|n| format!("u{n}")).collect();
    let user_data = json!({ "id": "42", "watchlist": watchlist }).to_string();
    let auth = format!(
        "{KEY}:{}",
        hmac_hex(SECRET, &user_auth_string(SOCKET, &user_data))
    );
    let out = send(
        &mut session,
        json!({"event":"pusher:signin","data":{"auth":auth,"user_data":user_data}}),
    );
    let [Output::SignedIn { watchlist, .. }, Output::Send(error)] = out.as_slice() else {
        panic!("unexpected outputs {out:?}");
    };
    assert_eq!(watchlist.len(), 100);
    assert_eq!(watchlist[99].as_str(), "u99");
    let error: Value = serde_json::from_str(error).unwrap();
    assert_eq!(error["event"], "pusher:error");
    assert_eq!(error["data"]["code"], 4302);
}

#[test]
fn bad_signin_is_refused_without_signing_in() {
    let mut session = session(Instant::now());
    let out = only_sent(&send(
        &mut session,
        json!({"event":"pusher:signin","data":{"auth":format!("{KEY}:00"),"user_data":"{\"id\":\"1\"}"}}),
    ));
    assert_eq!(out[0]["event"], "pusher:error");
    assert!(session.signed_in_user().is_none());
}
