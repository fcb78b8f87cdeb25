//! Apps and keys from the control plane, honoured by the edge at once.

use serde_json::json;

use crate::platform::spawn_platform;

#[tokio::test]
async fn a_new_app_is_served_at_once_and_isolated_from_other_tenants() {
    let platform = spawn_platform().await;
    let (_, a) = platform.account_with_app("a@example.com", None).await;
    let (_, b) = platform.account_with_app("b@example.com", None).await;
    let (mut subscriber, _) = platform.connected(&a.key).await;
    subscriber.subscribe("news", "", None).await;

    assert_eq!(
        platform
            .publish(&a.app.id, &a.key, &a.secret, "news", "from-a")
            .await,
        200
    );
    assert_eq!(subscriber.next_json().await["event"], "from-a");
    // B's key and secret cannot publish to A's app, even to the same channel name.
    assert_eq!(
        platform
            .publish(&a.app.id, &b.key, &b.secret, "news", "from-b")
            .await,
        401
    );
    // B publishing on its own app never reaches A's subscriber.
    assert_eq!(
        platform
            .publish(&b.app.id, &b.key, &b.secret, "news", "b-own")
            .await,
        200
    );
    assert_eq!(
        platform
            .publish(&a.app.id, &a.key, &a.secret, "news", "marker")
            .await,
        200
    );
    assert_eq!(subscriber.next_json().await["event"], "marker");

    // A private channel of A cannot be opened with a signature made with B's secret.
    let (mut intruder, socket_id) = platform.connected(&a.key).await;
    let forged = format!(
        "{}:{}",
        a.key,
        protocol::sign::hmac_hex(&b.secret, &format!("{socket_id}:private-a"))
    );
    assert_eq!(
        intruder.subscribe("private-a", &forged, None).await["event"],
        "pusher:error"
    );
}

#[tokio::test]
async fn rotation_keeps_both_keys_working_and_revoking_closes_the_old_keys_sockets() {
    let platform = spawn_platform().await;
    let (account, app) = platform.account_with_app("rot@example.com", None).await;
    let (new_key, new_secret) = platform
        .control
        .create_key(account, &app.app.id)
        .await
        .unwrap();

    let (mut old_client, _) = platform.connected(&app.key).await;
    let (mut new_client, _) = platform.connected(&new_key).await;
    old_client.subscribe("c", "", None).await;
    new_client.subscribe("c", "", None).await;
    assert_eq!(
        platform
            .publish(&app.app.id, &app.key, &app.secret, "c", "via-old")
            .await,
        200
    );
    assert_eq!(
        platform
            .publish(&app.app.id, &new_key, &new_secret, "c", "via-new")
            .await,
        200
    );
    for client in [&mut old_client, &mut new_client] {
        assert_eq!(client.next_json().await["event"], "via-old");
        assert_eq!(client.next_json().await["event"], "via-new");
    }

    platform
        .control
        .revoke_key(account, &app.app.id, &app.key)
        .await
        .unwrap();
    let (closed, frames) = old_client.expect_close().await;
    assert_eq!(
        closed.code, 4009,
        "the revoked key's socket is closed as unauthorized"
    );
    assert_eq!(frames.last().unwrap()["data"]["code"], 4009);
    assert_eq!(
        platform
            .publish(&app.app.id, &app.key, &app.secret, "c", "late")
            .await,
        401
    );
    let mut refused = platform.app.connect(&app.key).await;
    assert_eq!(
        refused.expect_close().await.0.code,
        4001,
        "new connections with the old key are refused"
    );

    // The new key's socket stayed open and still receives.
    assert_eq!(
        platform
            .publish(&app.app.id, &new_key, &new_secret, "c", "after")
            .await,
        200
    );
    assert_eq!(new_client.next_json().await["event"], "after");
}

#[tokio::test]
async fn disabling_an_app_closes_its_sockets_and_refuses_its_api_calls() {
    let platform = spawn_platform().await;
    let (account, app) = platform.account_with_app("off@example.com", None).await;
    let (mut client, _) = platform.connected(&app.key).await;
    platform
        .control
        .update_app(account, &app.app.id, None, Some(false))
        .await
        .unwrap();
    assert_eq!(client.expect_close().await.0.code, 4003);
    assert_eq!(
        platform
            .publish(&app.app.id, &app.key, &app.secret, "c", "e")
            .await,
        403
    );
    let mut refused = platform.app.connect(&app.key).await;
    assert_eq!(refused.expect_close().await.0.code, 4003);
}

#[tokio::test]
async fn a_plan_change_applies_to_open_connections_without_reconnecting() {
    let platform = spawn_platform().await;
    let (account, app) = platform
        .account_with_app("plan@example.com", Some("sandbox"))
        .await;
    let (mut client, socket_id) = platform.connected(&app.key).await;
    let auth = format!(
        "{}:{}",
        app.key,
        protocol::sign::hmac_hex(&app.secret, &format!("{socket_id}:private-p"))
    );
    client.subscribe("private-p", &auth, None).await;
    let event = json!({"event":"client-big","channel":"private-p","data":"x".repeat(20 * 1024)});
    client.send(event.clone()).await;
    let refused = client.expect_event("pusher:error").await;
    assert!(
        refused["data"]["message"]
            .as_str()
            .unwrap()
            .contains("10240"),
        "sandbox allows 10 KB"
    );

    platform
        .control
        .change_plan(account, &app.app.id, "pro")
        .await
        .unwrap();
    // The catalog has the new plan once the HTTP API takes a 20 KB event.
    let big = json!({"name":"e","channel":"c","data":"x".repeat(20 * 1024)});
    let path = format!("/apps/{}/events", app.app.id);
    let mut published = false;
    for _ in 0..1_000 {
        let response = platform
            .app
            .api(
                (&app.app.id, &app.key, &app.secret),
                "POST",
                &path,
                &[],
                Some(&big),
            )
            .await;
        if response.status() == 200 {
            published = true;
            break;
        }
        assert_eq!(response.status(), 413);
    }
    assert!(published, "the API never saw the pro plan");
    // The same connection now gets pro's 32 KB: the event is accepted, so the next frame is
    // the pong (a few tries while the change reaches the connection; each stays within the
    // client event rate).
    let mut accepted = false;
    for _ in 0..5 {
        client.send(event.clone()).await;
        client.send(json!({"event":"pusher:ping","data":{}})).await;
        let reply = client.next_json().await;
        if reply["event"] == "pusher:pong" {
            accepted = true;
            break;
        }
        assert!(
            reply["data"]["message"].as_str().unwrap().contains("10240"),
            "{reply}"
        );
        assert_eq!(client.next_json().await["event"], "pusher:pong");
    }
    assert!(accepted, "the pro plan's message size never applied");
}

#[tokio::test]
async fn with_postgres_gone_known_apps_keep_working() {
    let platform = spawn_platform().await;
    let (_, app) = platform.account_with_app("static@example.com", None).await;
    let (mut client, _) = platform.connected(&app.key).await;
    client.subscribe("c", "", None).await;
    platform.pool.close().await;

    assert_eq!(
        platform
            .publish(&app.app.id, &app.key, &app.secret, "c", "still")
            .await,
        200
    );
    assert_eq!(client.next_json().await["event"], "still");
    let (mut second, _) = platform.connected(&app.key).await;
    assert_eq!(
        second.subscribe("c", "", None).await["event"],
        "pusher_internal:subscription_succeeded"
    );
    // An app the edge never saw cannot be checked now: the client is asked to back off (4100),
    // not told that the key does not exist.
    // Its own reason, not the slow consumer's.
    let mut unknown = platform.app.connect("neverseen").await;
    let (closed, frames) = unknown.expect_close().await;
    assert_eq!(closed.code, 4100);
    assert_eq!(frames[0]["event"], "pusher:error");
    assert_eq!(frames[0]["data"]["code"], 4100);
    let reason = frames[0]["data"]["message"].as_str().unwrap();
    assert_eq!(
        reason,
        protocol::codes::CloseReason::CatalogUnavailable
            .disconnect()
            .reason
    );
    assert!(reason.contains("apps cannot be looked up"), "{reason}");
}

/// Unsigned, expired or malformed requests never reach the catalog, and answer the same for an
/// app id that exists and one that does not.
#[tokio::test]
async fn a_flood_of_random_app_ids_costs_no_catalog_queries_and_reveals_nothing() {
    let platform = spawn_platform().await;
    let (_, app) = platform.account_with_app("flood@example.com", None).await;
    let http = &platform.app.http;
    let base = format!("http://127.0.0.1:{}", platform.app.port);
    let base = base.as_str();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let body = r#"{"name":"e","channel":"c","data":"d"}"#;
    let md5 = protocol::sign::body_md5_hex(body.as_bytes());
    let sixty_four = "0".repeat(64);
    // What an attacker without a secret can send: nothing signed, an expired timestamp, a
    // signature of the wrong shape, a body that is not the one `body_md5` names.
    let queries = [
        String::new(),
        format!("auth_key={}&auth_timestamp={now}&auth_version=1.0", app.key),
        format!(
            "auth_key={}&auth_timestamp={}&auth_version=1.0&body_md5={md5}&auth_signature={sixty_four}",
            app.key,
            now - 3600
        ),
        format!(
            "auth_key={}&auth_timestamp={now}&auth_version=1.0&body_md5={md5}&auth_signature=xyz",
            app.key
        ),
        format!(
            "auth_key={}&auth_timestamp={now}&auth_version=1.0&body_md5={}&auth_signature={sixty_four}",
            app.key,
            "f".repeat(32)
        ),
    ];
    let answer = |app_id: String, query: String| async move {
        let response = http
            .post(format!("{base}/apps/{app_id}/events?{query}"))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        // An error that quotes the string to sign quotes the path; the id in it is the caller's
        // own, so it is not compared. The clock may tick between two answers.
        let text = response
            .text()
            .await
            .unwrap()
            .replace(&format!("/apps/{app_id}/"), "/apps/ID/")
            .replace(&(now + 1).to_string(), &now.to_string());
        (status, text)
    };
    let before = platform.catalog.miss_queries();
    for query in &queries {
        let known = answer(app.app.id.clone(), query.clone()).await;
        assert_eq!(known.0, 401, "{known:?}");
        for round in 0..40 {
            let random_id = format!("{}", 200_000 + round * 7919 + query.len());
            let unknown = answer(random_id, query.clone()).await;
            assert_eq!(unknown, known, "an unknown app answers as a known one");
        }
    }
    assert_eq!(
        platform.catalog.miss_queries(),
        before,
        "no request that could not be valid touched the database"
    );

    // One unknown key, tried many times, is one query; `/metrics` shows the misses.
    for _ in 0..20 {
        let mut refused = platform.app.connect("0123456789abcdef0123").await;
        assert_eq!(refused.expect_close().await.0.code, 4001);
    }
    assert_eq!(platform.catalog.miss_queries(), before + 1);
    let metrics = reqwest::get(format!("{base}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("switchboard_catalog_miss_queries_total"),
        "{metrics}"
    );
}
