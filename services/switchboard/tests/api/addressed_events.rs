//! Client events addressed to one presence member (`"to"`): only that member's connections
//! get them, live, replayed on resume, and across two edges on one Redis; a third member never
//! sees them, not even from history.

use serde_json::{Value, json};
use testkit::RedisServer;

use crate::helpers::{
    APP, TestApp, WsClient, channel_auth, data_of, spawn_app, spawn_app_on_broker,
};

const CHANNEL: &str = "presence-call";

/// A connection of `user` on the call's presence channel, and what it was told on joining.
async fn member(app: &TestApp, user: &str) -> (WsClient, Value) {
    let (mut client, socket_id) = app.connected(APP.1).await;
    let data = json!({ "user_id": user }).to_string();
    let auth = channel_auth(&socket_id, CHANNEL, Some(&data));
    let joined = client.subscribe(CHANNEL, &auth, Some(&data)).await;
    assert_eq!(joined["event"], "pusher_internal:subscription_succeeded");
    (client, data_of(&joined))
}

async fn resumed_member(app: &TestApp, user: &str, from: &Value) -> (WsClient, Value) {
    let (mut client, socket_id) = app.connected(APP.1).await;
    let data = json!({ "user_id": user }).to_string();
    let auth = channel_auth(&socket_id, CHANNEL, Some(&data));
    let resume = json!({ "serial": from["serial"], "epoch": from["epoch"] });
    client
        .send(json!({"event":"pusher:subscribe","data":{
            "channel": CHANNEL, "auth": auth, "channel_data": data, "resume": resume }}))
        .await;
    let joined = client
        .expect_event("pusher_internal:subscription_succeeded")
        .await;
    (client, data_of(&joined))
}

async fn signal(client: &mut WsClient, to: &str, text: &str) {
    client
        .send(json!({"event":"client-signal","channel":CHANNEL,"to":to,"data":{"text":text}}))
        .await;
}

/// Every `client-signal` text the client receives before the API's `marker` event (which
/// every subscriber gets, after anything sent before it).
async fn signals_until_marker(client: &mut WsClient) -> Vec<String> {
    let mut texts = Vec::new();
    loop {
        let frame = client.next_json().await;
        match frame["event"].as_str() {
            Some("marker") => return texts,
            Some("client-signal") => texts.push(data_of(&frame)["text"].as_str().unwrap().into()),
            _ => {}
        }
    }
}

/// Waits until the edge has handled (and published) everything the client sent before: a
/// connection handles its frames in order, so its pong follows its client events.
async fn settle(client: &mut WsClient) {
    client.send(json!({"event":"pusher:ping","data":{}})).await;
    client.expect_event("pusher:pong").await;
}

async fn mark(app: &TestApp) {
    assert_eq!(
        app.trigger(CHANNEL, "marker", "m", None).await.status(),
        200
    );
}

#[tokio::test]
async fn an_addressed_event_reaches_every_connection_of_its_member_and_no_one_else() {
    let app = spawn_app().await;
    let (mut alice_tab1, _) = member(&app, "alice").await;
    let (mut alice_tab2, _) = member(&app, "alice").await;
    let (mut bob, _) = member(&app, "bob").await;
    let (mut carol, _) = member(&app, "carol").await;

    signal(&mut alice_tab1, "bob", "offer").await;
    let received = bob.expect_event("client-signal").await;
    assert_eq!(received["user_id"], "alice", "the sender is named");
    assert_eq!(received["to"], "bob");
    assert!(received["serial"].as_u64().is_some(), "{received}");
    signal(&mut bob, "alice", "answer").await;
    settle(&mut bob).await;
    mark(&app).await;

    assert_eq!(signals_until_marker(&mut carol).await, Vec::<String>::new());
    assert_eq!(signals_until_marker(&mut bob).await, Vec::<String>::new());
    assert_eq!(signals_until_marker(&mut alice_tab1).await, vec!["answer"]);
    assert_eq!(signals_until_marker(&mut alice_tab2).await, vec!["answer"]);
}

#[tokio::test]
async fn a_resumed_member_gets_what_was_addressed_to_it_and_a_third_member_does_not() {
    let app = spawn_app().await;
    let (mut alice, _) = member(&app, "alice").await;
    let (bob, bob_joined) = member(&app, "bob").await;
    let (carol, carol_joined) = member(&app, "carol").await;
    // Both are cut; meanwhile alice signals bob, and the app publishes to everyone.
    bob.close().await;
    carol.close().await;
    signal(&mut alice, "bob", "candidate-1").await;
    signal(&mut alice, "bob", "candidate-2").await;
    signal(&mut alice, "dave", "not-for-bob").await;
    settle(&mut alice).await;
    mark(&app).await;
    // alice's own connection saw the marker after its signals were published.
    assert_eq!(signals_until_marker(&mut alice).await, Vec::<String>::new());

    let (mut bob, _) = resumed_member(&app, "bob", &bob_joined).await;
    assert_eq!(
        signals_until_marker(&mut bob).await,
        vec!["candidate-1", "candidate-2"],
        "replayed in order, only what was addressed to bob"
    );
    let (mut carol, _) = resumed_member(&app, "carol", &carol_joined).await;
    assert_eq!(
        signals_until_marker(&mut carol).await,
        Vec::<String>::new(),
        "history replays no one else's signals"
    );
}

#[tokio::test]
async fn addressing_is_refused_on_private_channels() {
    let app = spawn_app().await;
    let (mut client, socket_id) = app.connected(APP.1).await;
    let auth = channel_auth(&socket_id, "private-a", None);
    client.subscribe("private-a", &auth, None).await;
    client
        .send(json!({"event":"client-x","channel":"private-a","to":"bob","data":{}}))
        .await;
    let error = client.expect_event("pusher:error").await;
    let message = error["data"]["message"].as_str().unwrap().to_owned();
    assert!(message.contains("only presence channels"), "{message}");
}

#[tokio::test]
async fn an_addressed_event_crosses_edges_to_its_member_only() {
    let redis = RedisServer::start();
    let edge_a = spawn_app_on_broker(&redis.url()).await;
    let edge_b = spawn_app_on_broker(&redis.url()).await;
    let (mut alice, _) = member(&edge_a, "alice").await;
    let (mut bob, _) = member(&edge_b, "bob").await;
    let (mut carol, _) = member(&edge_b, "carol").await;
    let (mut dave, _) = member(&edge_a, "dave").await;

    signal(&mut alice, "bob", "offer").await;
    signal(&mut alice, "carol", "other-offer").await;
    settle(&mut alice).await;
    mark(&edge_a).await;
    assert_eq!(signals_until_marker(&mut bob).await, vec!["offer"]);
    assert_eq!(signals_until_marker(&mut carol).await, vec!["other-offer"]);
    assert_eq!(signals_until_marker(&mut dave).await, Vec::<String>::new());
}
