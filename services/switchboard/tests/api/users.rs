//! User features as the official server libraries and pusher-js use them: terminating a user's
//! connections on the path pusher-http-python sends, and watchlist events.

use serde_json::{Value, json};

use crate::helpers::{APP, OTHER_APP, TestApp, WsClient, data_of, spawn_app};

/// A connection of `app` signed in with `user_data`; returns it after `signin_success`.
async fn signed_in(test_app: &TestApp, app: (&str, &str, &str), user_data: &Value) -> WsClient {
    let (mut client, socket_id) = test_app.connected(app.1).await;
    let user_data = user_data.to_string();
    let signature = protocol::sign::hmac_hex(
        app.2,
        &protocol::sign::user_auth_string(&socket_id, &user_data),
    );
    let auth = format!("{}:{signature}", app.1);
    client
        .send(json!({"event":"pusher:signin","data":{"auth":auth,"user_data":user_data}}))
        .await;
    client.expect_event("pusher:signin_success").await;
    client
}

/// The `events` of the next watchlist frame.
async fn next_watchlist_events(client: &mut WsClient) -> Value {
    let frame = client
        .expect_event("pusher_internal:watchlist_events")
        .await;
    data_of(&frame)["events"].clone()
}

#[tokio::test]
async fn terminate_without_the_apps_prefix_closes_the_signing_apps_user_only() {
    let app = spawn_app().await;
    let mut victim = signed_in(&app, APP, &json!({"id":"42"})).await;
    let mut same_id_other_app = signed_in(&app, OTHER_APP, &json!({"id":"42"})).await;

    // pusher-http-python signs and posts exactly this path.
    let response = app
        .api(
            APP,
            "POST",
            "/users/42/terminate_connections",
            &[],
            Some(&json!({})),
        )
        .await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.json::<Value>().await.unwrap(), json!({}));
    let (closed, _) = victim.expect_close().await;
    assert_eq!(closed.code, 4009);

    // The other app's user of the same id is untouched.
    same_id_other_app
        .send(json!({"event":"pusher:ping","data":{}}))
        .await;
    assert_eq!(same_id_other_app.next_json().await["event"], "pusher:pong");
}

#[tokio::test]
async fn terminate_without_the_prefix_needs_a_known_key_and_its_signature() {
    let app = spawn_app().await;
    let unknown = ("app1", "no-such-key", "secret1");
    let path = "/users/42/terminate_connections";
    let response = app.api(unknown, "POST", path, &[], Some(&json!({}))).await;
    assert_eq!(response.status(), 401);
    let forged = (APP.0, APP.1, "not-the-secret");
    let response = app.api(forged, "POST", path, &[], Some(&json!({}))).await;
    assert_eq!(response.status(), 401);
    let unsigned = app
        .http
        .post(format!("http://127.0.0.1:{}{path}", app.port))
        .send()
        .await
        .unwrap();
    assert_eq!(unsigned.status(), 401);
}

#[tokio::test]
async fn a_watcher_hears_online_and_offline_and_nothing_from_another_app() {
    let app = spawn_app().await;
    let mut watcher = signed_in(&app, APP, &json!({"id":"a","watchlist":["b","c"]})).await;
    assert_eq!(
        next_watchlist_events(&mut watcher).await,
        json!([{"name":"offline","user_ids":["b","c"]}])
    );

    // The other app's "b" signs in: a's app hears nothing of it. Watchers are told before
    // `signin_success`, so anything it caused would come before what follows.
    let _foreign_b = signed_in(&app, OTHER_APP, &json!({"id":"b"})).await;
    let first_b = signed_in(&app, APP, &json!({"id":"b"})).await;
    assert_eq!(
        next_watchlist_events(&mut watcher).await,
        json!([{"name":"online","user_ids":["b"]}])
    );
    // A second connection of b is not news; its first one leaving is not either.
    let second_b = signed_in(&app, APP, &json!({"id":"b"})).await;
    first_b.close().await;
    let _c = signed_in(&app, APP, &json!({"id":"c"})).await;
    assert_eq!(
        next_watchlist_events(&mut watcher).await,
        json!([{"name":"online","user_ids":["c"]}])
    );
    second_b.close().await;
    assert_eq!(
        next_watchlist_events(&mut watcher).await,
        json!([{"name":"offline","user_ids":["b"]}])
    );
}

#[tokio::test]
async fn a_watchlist_of_more_than_a_hundred_watches_the_first_hundred_and_says_4302() {
    let app = spawn_app().await;
    let watchlist: Vec<String> = (0..101).map(|n| format!("u{n}")).collect();
    let mut watcher = signed_in(&app, APP, &json!({"id":"a","watchlist":watchlist})).await;
    let error = watcher.expect_event("pusher:error").await;
    assert_eq!(error["data"]["code"], 4302);
    // The initial state came before `signin_success`; it names exactly the first hundred.
    let _u100 = signed_in(&app, APP, &json!({"id":"u100"})).await;
    let _u99 = signed_in(&app, APP, &json!({"id":"u99"})).await;
    assert_eq!(
        next_watchlist_events(&mut watcher).await,
        json!([{"name":"online","user_ids":["u99"]}])
    );
}
