//! The Pusher HTTP API: signatures, limits, channel queries, terminate.

use edge::EdgeSettings;
use serde_json::{Value, json};

use crate::helpers::{APP, OTHER_APP, channel_auth, spawn_app, spawn_app_with};

fn events_path() -> String {
    format!("/apps/{}/events", APP.0)
}

#[tokio::test]
async fn bad_signatures_are_refused_with_401() {
    let app = spawn_app().await;
    let body = json!({"name":"e","channel":"c","data":"d"});
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();

    let wrong_secret = app
        .api_signed_at(
            APP.1,
            "wrong",
            &now.to_string(),
            "POST",
            &events_path(),
            &[],
            Some(&body),
        )
        .await;
    assert_eq!(wrong_secret.status(), 401);
    assert!(
        wrong_secret
            .text()
            .await
            .unwrap()
            .contains("Invalid signature")
    );

    let stale = (now - 601).to_string();
    let expired = app
        .api_signed_at(
            APP.1,
            APP.2,
            &stale,
            "POST",
            &events_path(),
            &[],
            Some(&body),
        )
        .await;
    assert_eq!(expired.status(), 401);
    assert!(expired.text().await.unwrap().contains("Timestamp expired"));

    let unknown_key = app
        .api_signed_at(
            "nokey",
            APP.2,
            &now.to_string(),
            "POST",
            &events_path(),
            &[],
            Some(&body),
        )
        .await;
    assert_eq!(unknown_key.status(), 401);

    // Another app's valid key and secret do not open this app.
    let foreign = app
        .api(OTHER_APP, "POST", &events_path(), &[], Some(&body))
        .await;
    assert_eq!(foreign.status(), 401);

    let unknown_app = app
        .api(APP, "POST", "/apps/nosuchapp/events", &[], Some(&body))
        .await;
    assert_eq!(unknown_app.status(), 404);
}

#[tokio::test]
async fn a_tampered_body_fails_body_md5() {
    let app = spawn_app().await;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let signed_body = r#"{"name":"e","channel":"c","data":"d"}"#;
    let md5 = protocol::sign::body_md5_hex(signed_body.as_bytes());
    let query = format!(
        "auth_key={}&auth_timestamp={now}&auth_version=1.0&body_md5={md5}",
        APP.1
    );
    let signature = protocol::sign::hmac_hex(APP.2, &format!("POST\n{}\n{query}", events_path()));
    let url = format!(
        "http://127.0.0.1:{}{}?{query}&auth_signature={signature}",
        app.port,
        events_path()
    );
    let tampered = r#"{"name":"e","channel":"c","data":"EVIL"}"#;
    let response = app.http.post(url).body(tampered).send().await.unwrap();
    assert_eq!(response.status(), 401);
    assert!(response.text().await.unwrap().contains("body_md5"));
}

#[tokio::test]
async fn limits_and_malformed_bodies_get_4xx_and_publish_nothing() {
    let app = spawn_app().await;
    let (mut client, _) = app.connected(APP.1).await;
    client.subscribe("c", "", None).await;

    let oversize = json!({"name":"e","channel":"c","data":"x".repeat(10 * 1024 + 1)});
    assert_eq!(
        app.api(APP, "POST", &events_path(), &[], Some(&oversize))
            .await
            .status(),
        413
    );
    let channels: Vec<String> = (0..101).map(|n| format!("c{n}")).collect();
    let too_many = json!({"name":"e","channels":channels,"data":"d"});
    assert_eq!(
        app.api(APP, "POST", &events_path(), &[], Some(&too_many))
            .await
            .status(),
        400
    );
    let bad_channel = json!({"name":"e","channels":["c","bad name"],"data":"d"});
    assert_eq!(
        app.api(APP, "POST", &events_path(), &[], Some(&bad_channel))
            .await
            .status(),
        400
    );
    let bad_socket = json!({"name":"e","channel":"c","data":"d","socket_id":"nope"});
    assert_eq!(
        app.api(APP, "POST", &events_path(), &[], Some(&bad_socket))
            .await
            .status(),
        400
    );
    let not_json = json!("just a string");
    let response = app
        .api(APP, "POST", &events_path(), &[], Some(&not_json))
        .await;
    assert_eq!(response.status(), 400);
    assert!(
        response.json::<Value>().await.unwrap()["error"]
            .as_str()
            .unwrap()
            .contains("JSON")
    );

    let batch: Vec<Value> = (0..11)
        .map(|n| json!({"name":"e","channel":"c","data":n.to_string()}))
        .collect();
    let batch_path = format!("/apps/{}/batch_events", APP.0);
    assert_eq!(
        app.api(APP, "POST", &batch_path, &[], Some(&json!({"batch":batch})))
            .await
            .status(),
        400
    );
    let half_bad = json!({"batch":[{"name":"e","channel":"c","data":"ok"},{"name":"e","channel":"bad name","data":"no"}]});
    assert_eq!(
        app.api(APP, "POST", &batch_path, &[], Some(&half_bad))
            .await
            .status(),
        400
    );

    // None of the refused requests published anything: the first frame is this one.
    app.trigger("c", "only", "1", None).await;
    assert_eq!(client.next_json().await["event"], "only");
}

#[tokio::test]
async fn batch_events_publish_each_in_order_with_info() {
    let app = spawn_app().await;
    let (mut client, _) = app.connected(APP.1).await;
    client.subscribe("a", "", None).await;
    let batch = json!({"batch":[
        {"name":"one","channel":"a","data":"1","info":"subscription_count"},
        {"name":"two","channel":"a","data":"2"},
        {"name":"three","channel":"b","data":"3"}
    ]});
    let response = app
        .api(
            APP,
            "POST",
            &format!("/apps/{}/batch_events", APP.0),
            &[],
            Some(&batch),
        )
        .await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.json::<Value>().await.unwrap(),
        json!({"batch":[{"subscription_count":1},{},{}]})
    );
    assert_eq!(client.next_json().await["event"], "one");
    assert_eq!(client.next_json().await["event"], "two");
}

#[tokio::test]
async fn channel_queries_report_occupancy_and_counts() {
    let app = spawn_app().await;
    let (mut one, one_id) = app.connected(APP.1).await;
    let (mut two, two_id) = app.connected(APP.1).await;
    let presence = "presence-lobby";
    for (client, id, user) in [(&mut one, &one_id, "u1"), (&mut two, &two_id, "u2")] {
        let data = format!(r#"{{"user_id":"{user}"}}"#);
        client
            .subscribe(
                presence,
                &channel_auth(id, presence, Some(&data)),
                Some(&data),
            )
            .await;
        client.subscribe("public-x", "", None).await;
    }
    let get = |path: String, params: Vec<(&'static str, &'static str)>| {
        let app = &app;
        async move { app.api(APP, "GET", &path, &params, None).await }
    };
    let base = format!("/apps/{}", APP.0);

    let all = get(format!("{base}/channels"), vec![])
        .await
        .json::<Value>()
        .await
        .unwrap();
    assert_eq!(all, json!({"channels":{"presence-lobby":{},"public-x":{}}}));
    let counted = get(
        format!("{base}/channels"),
        vec![("filter_by_prefix", "presence-"), ("info", "user_count")],
    )
    .await;
    assert_eq!(
        counted.json::<Value>().await.unwrap(),
        json!({"channels":{"presence-lobby":{"user_count":2}}})
    );
    let refused = get(format!("{base}/channels"), vec![("info", "user_count")]).await;
    assert_eq!(refused.status(), 400);

    let public = get(
        format!("{base}/channels/public-x"),
        vec![("info", "subscription_count")],
    )
    .await;
    assert_eq!(
        public.json::<Value>().await.unwrap(),
        json!({"occupied":true,"subscription_count":2})
    );
    let lobby = get(
        format!("{base}/channels/{presence}"),
        vec![("info", "user_count")],
    )
    .await;
    assert_eq!(
        lobby.json::<Value>().await.unwrap(),
        json!({"occupied":true,"user_count":2})
    );
    let empty = get(format!("{base}/channels/nobody-here"), vec![]).await;
    assert_eq!(
        empty.json::<Value>().await.unwrap(),
        json!({"occupied":false})
    );
    assert_eq!(
        get(
            format!("{base}/channels/public-x"),
            vec![("info", "user_count")]
        )
        .await
        .status(),
        400
    );
    assert_eq!(
        get(format!("{base}/channels/public-x/users"), vec![])
            .await
            .status(),
        400
    );

    // The other app sees none of these channels.
    let other = app
        .api(
            OTHER_APP,
            "GET",
            &format!("/apps/{}/channels", OTHER_APP.0),
            &[],
            None,
        )
        .await;
    assert_eq!(other.json::<Value>().await.unwrap(), json!({"channels":{}}));

    let trigger = json!({"name":"e","channels":[presence,"public-x"],"data":"d","info":"user_count,subscription_count"});
    let response = app
        .api(APP, "POST", &format!("{base}/events"), &[], Some(&trigger))
        .await;
    assert_eq!(
        response.json::<Value>().await.unwrap(),
        json!({"channels":{"presence-lobby":{"user_count":2,"subscription_count":2},"public-x":{"subscription_count":2}}})
    );
}

#[tokio::test]
async fn terminate_connections_closes_the_users_signed_in_sockets_with_4009() {
    let app = spawn_app().await;
    let (mut signed_in, socket_id) = app.connected(APP.1).await;
    let user_data = r#"{"id":"42"}"#;
    let signature = protocol::sign::hmac_hex(
        APP.2,
        &protocol::sign::user_auth_string(&socket_id, user_data),
    );
    let auth = format!("{}:{signature}", APP.1);
    signed_in
        .send(json!({"event":"pusher:signin","data":{"auth":auth,"user_data":user_data}}))
        .await;
    assert_eq!(
        signed_in.next_json().await["event"],
        "pusher:signin_success"
    );
    let (mut bystander, _) = app.connected(APP.1).await;

    let path = format!("/apps/{}/users/42/terminate_connections", APP.0);
    let response = app.api(APP, "POST", &path, &[], Some(&json!({}))).await;
    assert_eq!(response.status(), 200);
    let (closed, frames) = signed_in.expect_close().await;
    assert_eq!(closed.code, 4009);
    assert_eq!(frames.last().unwrap()["data"]["code"], 4009);

    bystander
        .send(json!({"event":"pusher:ping","data":{}}))
        .await;
    assert_eq!(bystander.next_json().await["event"], "pusher:pong");
}

#[tokio::test]
async fn a_slow_consumer_is_closed_with_4100_instead_of_growing_memory() {
    let app = spawn_app_with(EdgeSettings {
        outbox_capacity: 8,
        ..EdgeSettings::default()
    })
    .await;
    let (mut slow, _) = app.connected(APP.1).await;
    slow.subscribe("firehose", "", None).await;
    // The client stops reading. Publish 10 KB events, fewer per request than the outbox holds
    // (so only a send blocked on the unread socket can overflow it), until the server drops it.
    let data = "x".repeat(10 * 1024);
    let batch: Vec<Value> = (0..4)
        .map(|_| json!({"name":"e","channel":"firehose","data":data}))
        .collect();
    let batch = json!({ "batch": batch });
    let path = format!("/apps/{}/channels/firehose", APP.0);
    let mut dropped = false;
    for _ in 0..5_000 {
        app.api(
            APP,
            "POST",
            &format!("/apps/{}/batch_events", APP.0),
            &[],
            Some(&batch),
        )
        .await;
        let info = app
            .api(APP, "GET", &path, &[], None)
            .await
            .json::<Value>()
            .await
            .unwrap();
        if info["occupied"] == false {
            dropped = true;
            break;
        }
    }
    assert!(dropped, "the slow subscriber was never dropped");
    let (closed, _) = slow.expect_close().await;
    assert_eq!(closed.code, 4100);
}

#[tokio::test]
async fn healthz_answers() {
    let app = spawn_app().await;
    let response = app
        .http
        .get(format!("http://127.0.0.1:{}/healthz", app.port))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn a_wrong_method_is_405_with_allow() {
    let app = spawn_app().await;
    let routes = [
        ("/apps/app1/events", "GET", "POST"),
        ("/apps/app1/batch_events", "PUT", "POST"),
        ("/apps/app1/channels", "POST", "GET"),
        ("/apps/app1/channels/c", "DELETE", "GET"),
        ("/apps/app1/channels/presence-c/users", "POST", "GET"),
        ("/apps/app1/channels/c/history", "PATCH", "GET"),
        ("/apps/app1/users/u1/terminate_connections", "GET", "POST"),
    ];
    for (path, wrong, allowed) in routes {
        let response = app
            .http
            .request(
                reqwest::Method::from_bytes(wrong.as_bytes()).unwrap(),
                format!("http://127.0.0.1:{}{path}", app.port),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 405, "{wrong} {path}");
        assert_eq!(response.headers()["allow"], allowed, "{path}");
        let body: Value = response.json().await.unwrap();
        assert!(
            body["error"].as_str().unwrap().contains("not allowed"),
            "{body}"
        );
    }
}

/// A channel may be named `app`: its query paths end in `/app/{key}`-like segments, which
/// the WebSocket route under a `httpPath` prefix once took (it answered "WebSocket upgrade
/// is expected").
#[tokio::test]
async fn a_channel_named_app_is_queried_through_the_http_api() {
    let app = spawn_app().await;
    let users = format!("/apps/{}/channels/app/users", APP.0);
    let signed = app.api(APP, "GET", &users, &[], None).await;
    assert_eq!(signed.status(), 400, "users of a public channel");
    let content_type = signed.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        content_type.starts_with("application/json"),
        "{content_type}"
    );
    let path = format!("/apps/{}/channels/app", APP.0);
    let channel = app.api(APP, "GET", &path, &[], None).await;
    assert_eq!(channel.status(), 200);
    assert_eq!(
        channel.json::<Value>().await.unwrap(),
        json!({"occupied": false})
    );
}

/// `/sb/app/{key}` without an upgrade is the WebSocket route's, as `/app/{key}` and any
/// other prefix are, though our carriers' scope sits below it.
#[tokio::test]
async fn a_plain_get_of_a_websocket_path_is_told_to_upgrade_under_any_prefix() {
    let app = spawn_app().await;
    for prefix in ["", "/sb", "/pusher"] {
        let url = format!("http://127.0.0.1:{}{prefix}/app/{}", app.port, APP.1);
        let response = app.http.get(url).send().await.unwrap();
        assert_eq!(response.status(), 400, "{prefix:?}");
        let body = response.text().await.unwrap();
        assert!(
            body.contains("WebSocket upgrade is expected"),
            "{prefix:?}: {body}"
        );
    }
}
