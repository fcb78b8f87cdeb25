//! Memory a client or a tenant could grow without bound: each test mounts the attack over real
//! sockets and reads the server's own accounting from `/metrics` (per node, so tests running
//! side by side do not mix), never a timing.

use std::time::Duration;

use edge::EdgeSettings;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;

use crate::helpers::{APP, TestApp, channel_auth_with, data_of, spawn_app_with};
use crate::platform::spawn_platform;

/// Only a hang reaches this.
const TIMEOUT: Duration = Duration::from_secs(60);

const SLOW_CONSUMERS: &str = "switchboard_slow_consumers_total";
const OUTBOX_PEAK: &str = "switchboard_outbox_peak_bytes";
const HISTORY_BYTES: &str = "switchboard_stored_bytes{store=\"history\"}";
const HISTORY_EVICTIONS: &str = "switchboard_stored_evictions_total{store=\"history\"}";
const HISTORY_CHANNELS: &str = "switchboard_stored_channels{store=\"history\"}";

async fn spawn_app_with_outbox_bound(outbox_max_bytes: usize) -> TestApp {
    spawn_app_with(EdgeSettings {
        outbox_max_bytes,
        // These tests open a thousand clients of one app as fast as they can: the per-app
        // connect pace (a defence between tenants, see noisy_neighbours.rs) is not under test.
        app_connects_per_second: 0,
        ..EdgeSettings::default()
    })
    .await
}

/// `prefix-0`, `prefix-1`, … : `count` channel names.
fn numbered_channels(prefix: &str, count: usize) -> Vec<String> {
    (0..count).map(|n| format!("{prefix}-{n}")).collect()
}

/// One event with `data` triggered on all `channels` at once, signed as `credentials`.
async fn trigger_on_all(
    server: &TestApp,
    credentials: (&str, &str, &str),
    channels: &[String],
    data: &str,
) {
    let body = json!({"name": "e", "channels": channels, "data": data});
    let path = format!("/apps/{}/events", credentials.0);
    let response = server
        .api(credentials, "POST", &path, &[], Some(&body))
        .await;
    assert_eq!(response.status(), 200);
}

/// Waits until `series` reaches `at_least`, checking after each step of the attack.
async fn wait_for_metric(app: &TestApp, series: &str, at_least: u64) {
    let waited = tokio::time::timeout(TIMEOUT, async {
        let mut checks = tokio::time::interval(Duration::from_millis(20));
        loop {
            checks.tick().await;
            if app.metric(series).await >= at_least {
                return;
            }
        }
    });
    waited
        .await
        .unwrap_or_else(|_| panic!("{series} never reached {at_least}"));
}

type RawClient = WebSocketStream<TcpStream>;

/// A WebSocket client on a socket with a small receive buffer, subscribed to `channel`; the
/// caller then stops reading it, so the server's writes back up into its outbox.
async fn client_that_will_stop_reading(app: &TestApp, channel: &str) -> RawClient {
    // A small segment size too: on loopback (64 KiB segments) the server's send buffer would
    // otherwise grow to about a megabyte before its outbox fills.
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    socket.set_tcp_mss(1024).unwrap();
    socket.set_nonblocking(true).unwrap();
    let socket = TcpSocket::from_std_stream(socket.into());
    let stream = socket
        .connect(([127, 0, 0, 1], app.port).into())
        .await
        .unwrap();
    let url = format!("ws://127.0.0.1:{}/app/{}?protocol=7", app.port, APP.1);
    let (mut client, _) = tokio_tungstenite::client_async(url, stream).await.unwrap();
    read_until(&mut client, "pusher:connection_established").await;
    let subscribe = json!({"event":"pusher:subscribe","data":{"channel":channel}});
    client
        .send(Message::text(subscribe.to_string()))
        .await
        .unwrap();
    read_until(&mut client, "pusher_internal:subscription_succeeded").await;
    client
}

async fn read_until(client: &mut RawClient, event: &str) -> Value {
    loop {
        let message = tokio::time::timeout(TIMEOUT, client.next())
            .await
            .expect("a frame in time")
            .expect("open")
            .expect("a frame");
        if let Message::Text(text) = message {
            let frame: Value = serde_json::from_str(&text).unwrap();
            if frame["event"] == event {
                return frame;
            }
        }
    }
}

/// Reads what the server still sends until its close frame; the close code and the largest
/// text frame seen.
async fn read_to_close<S>(mut client: S) -> (u16, usize)
where
    S: futures_util::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    let mut largest = 0;
    loop {
        let message = tokio::time::timeout(TIMEOUT, client.next())
            .await
            .expect("the close arrives in time");
        match message {
            Some(Ok(Message::Text(text))) => largest = largest.max(text.len()),
            Some(Ok(Message::Close(Some(CloseFrame { code, .. })))) => {
                return (code.into(), largest);
            }
            Some(Ok(Message::Close(None))) | Some(Err(_)) | None => return (1006, largest),
            Some(Ok(_)) => {}
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_and_provokes_large_errors_is_closed_with_4100_within_its_bound()
 {
    let bound = 64 * 1024;
    let app = spawn_app_with_outbox_bound(bound).await;
    let client = client_that_will_stop_reading(&app, "news").await;
    let (mut sink, stream) = client.split();
    // Each subscribe names a channel of 2,000 control characters: once, every one of them came
    // back Debug-escaped in the error, seven bytes for one.
    let name = "\u{1}".repeat(2_000);
    let frame = json!({"event":"pusher:subscribe","data":{"channel":name}}).to_string();
    let provoking =
        tokio::spawn(async move { while sink.send(Message::text(frame.clone())).await.is_ok() {} });
    wait_for_metric(&app, SLOW_CONSUMERS, 1).await;
    provoking.abort();

    let peak = app.metric(OUTBOX_PEAK).await;
    // Replies may take twice the fan-out bound; the close came when they would have passed it.
    assert!(peak <= 2 * bound as u64, "one outbox held {peak} bytes");
    assert!(
        peak > bound as u64,
        "the byte bound, not the frame bound, closed it: {peak}"
    );
    let (code, largest) = read_to_close(stream).await;
    assert_eq!(code, 4100);
    assert!(
        largest < 2_000,
        "an error frame of {largest} bytes for a 2,000-byte name"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_clients_that_never_read_are_closed_with_4100_and_healthy_ones_get_every_event()
{
    let bound = 32 * 1024;
    let app = spawn_app_with_outbox_bound(bound).await;
    let mut slow = Vec::new();
    for _ in 0..1_000 {
        slow.push(client_that_will_stop_reading(&app, "news").await);
    }
    // Healthy subscribers report each event they read; the next one is published once both
    // have it, so their pace (not a timer) sets the publisher's.
    let (seen_sender, mut seen_receiver) = tokio::sync::mpsc::unbounded_channel();
    let mut healthy = Vec::new();
    for _ in 0..2 {
        let (mut client, _) = app.connected(APP.1).await;
        client.subscribe("news", "", None).await;
        let seen_sender = seen_sender.clone();
        healthy.push(tokio::spawn(async move {
            let mut seen = Vec::new();
            loop {
                let frame = client.expect_event("e").await;
                match frame["data"].as_str().unwrap().split_once(':') {
                    Some((n, _)) => {
                        let n = n.parse::<usize>().unwrap();
                        seen.push(n);
                        seen_sender.send(n).unwrap();
                    }
                    None => return seen,
                }
            }
        }));
    }
    let padding = "x".repeat(8 * 1024);
    let mut published = 0;
    while app.metric(SLOW_CONSUMERS).await < 1_000 {
        assert!(published < 5_000, "the slow clients were never closed");
        let data = format!("{published}:{padding}");
        assert_eq!(app.trigger("news", "e", &data, None).await.status(), 200);
        for _ in 0..2 {
            let seen = tokio::time::timeout(TIMEOUT, seen_receiver.recv()).await;
            assert_eq!(seen.unwrap(), Some(published));
        }
        published += 1;
        let peak = app.metric(OUTBOX_PEAK).await;
        assert!(peak <= bound as u64, "one outbox held {peak} bytes");
    }
    assert_eq!(app.trigger("news", "e", "last", None).await.status(), 200);
    for reader in healthy {
        let seen = tokio::time::timeout(TIMEOUT, reader)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            seen,
            (0..published).collect::<Vec<_>>(),
            "every event, in order"
        );
    }
    assert_eq!(app.metric(SLOW_CONSUMERS).await, 1_000);
    // Each reads what its socket still holds, then the close frame: 4100.
    let closes: Vec<_> = slow
        .into_iter()
        .map(|client| tokio::spawn(read_to_close(client)))
        .collect();
    for close in closes {
        assert_eq!(close.await.unwrap().0, 4100);
    }
    let peak = app.metric(OUTBOX_PEAK).await;
    assert!(peak <= bound as u64, "one outbox held {peak} bytes");
}

#[tokio::test]
async fn a_trigger_to_many_channels_stays_within_the_node_history_budget_and_a_resume_past_it_fails()
 {
    let budget = 32 * 1024;
    let app = spawn_app_with(EdgeSettings {
        history_max_bytes: budget,
        ..EdgeSettings::default()
    })
    .await;
    let (mut early, _) = app.connected(APP.1).await;
    let position = data_of(&early.subscribe("hist-0", "", None).await);
    early.close().await;

    let channels = numbered_channels("hist", 100);
    for _ in 0..3 {
        trigger_on_all(&app, APP, &channels, &"x".repeat(1024)).await;
    }
    let stored = app.metric(HISTORY_BYTES).await;
    assert!(stored <= budget as u64, "{stored} bytes of history kept");
    assert!(app.metric(HISTORY_EVICTIONS).await > 0);

    let (mut resuming, _) = app.connected(APP.1).await;
    let resume = json!({"epoch": position["epoch"], "serial": 0});
    let subscribe = json!({"event":"pusher:subscribe","data":{"channel":"hist-0","resume":resume}});
    resuming.send(subscribe).await;
    let succeeded = resuming
        .expect_event("pusher_internal:subscription_succeeded")
        .await;
    assert_eq!(data_of(&succeeded)["serial"], 3);
    let failed = resuming.next_json().await;
    assert_eq!(failed["event"], "switchboard:resume_failed", "{failed}");
    assert_eq!(data_of(&failed)["reason"], "outside_window");
}

#[tokio::test]
async fn subscribing_keeps_no_history_and_published_channels_stop_at_the_cap_per_app() {
    let app = spawn_app_with(EdgeSettings {
        history_max_channels_per_app: 5,
        ..EdgeSettings::default()
    })
    .await;
    let (mut client, _) = app.connected(APP.1).await;
    for n in 0..300 {
        let channel = format!("quiet-{n}");
        let succeeded = client.subscribe(&channel, "", None).await;
        assert_eq!(succeeded["event"], "pusher_internal:subscription_succeeded");
        let unsubscribe = json!({"event":"pusher:unsubscribe","data":{"channel":channel}});
        client.send(unsubscribe).await;
    }
    assert_eq!(
        app.metric(HISTORY_CHANNELS).await,
        0,
        "subscribers alone hold no history"
    );
    trigger_on_all(&app, APP, &numbered_channels("busy", 10), "d").await;
    assert_eq!(app.metric(HISTORY_CHANNELS).await, 5);
}

#[tokio::test]
async fn a_socket_refused_by_a_full_presence_channel_is_not_on_it() {
    let platform = spawn_platform().await;
    // Two presence members and two channels per connection; the rest as the sandbox.
    sqlx::query(
        "INSERT INTO plans VALUES ('two-members', 'Two members', 0, 10, 1000, 10240, 10, 100, \
         2, 2, 100, 120, 1, TRUE, 0, 0, 20)",
    )
    .execute(&platform.pool)
    .await
    .unwrap();
    let (_, app) = platform
        .account_with_app("full@example.com", Some("two-members"))
        .await;
    let auth = |socket_id: &str, channel: &str, data: Option<&str>| {
        channel_auth_with(&app.key, &app.secret, socket_id, channel, data)
    };
    let channel = "presence-full";
    let mut members = Vec::new();
    for user in ["u1", "u2"] {
        let (mut member, socket_id) = platform.connected(&app.key).await;
        let data = format!(r#"{{"user_id":"{user}"}}"#);
        let joined = member
            .subscribe(
                channel,
                &auth(&socket_id, channel, Some(&data)),
                Some(&data),
            )
            .await;
        assert_eq!(joined["event"], "pusher_internal:subscription_succeeded");
        members.push(member);
    }
    let (mut refused, socket_id) = platform.connected(&app.key).await;
    let data = r#"{"user_id":"u3"}"#;
    let answer = refused
        .subscribe(channel, &auth(&socket_id, channel, Some(data)), Some(data))
        .await;
    assert_eq!(answer["event"], "pusher:subscription_error");

    let event = json!({"event":"client-hi","channel":channel,"data":"from the refused"});
    refused.send(event).await;
    let error = refused.expect_event("pusher:error").await;
    assert!(
        error["data"]["message"]
            .as_str()
            .unwrap()
            .contains("not subscribed"),
        "{error}"
    );
    for other in ["private-a", "private-b"] {
        let joined = refused
            .subscribe(other, &auth(&socket_id, other, None), None)
            .await;
        assert_eq!(
            joined["event"], "pusher_internal:subscription_succeeded",
            "the refused channel takes no slot of the two"
        );
    }
    // A member's own client event reaches the other member: the channel works for those on it.
    let hello = json!({"event":"client-hi","channel":channel,"data":"from u1"});
    members[0].send(hello).await;
    let received = members[1].expect_event("client-hi").await;
    assert_eq!(
        received["data"], "from u1",
        "and nothing from the refused socket came first"
    );
}

#[tokio::test]
async fn the_plans_history_bytes_bound_what_one_app_keeps() {
    let platform = spawn_platform().await;
    let budget = 16 * 1024;
    sqlx::query(
        "INSERT INTO plans VALUES ('small-history', 'Small history', 0, 10, 1000000, 10240, 10, \
         100, 100, 100, 1000, 600, 1, TRUE, 0, 0, 21, $1)",
    )
    .bind(budget as i64)
    .execute(&platform.pool)
    .await
    .unwrap();
    let (_, created) = platform
        .account_with_app("history@example.com", Some("small-history"))
        .await;
    let app_id = created.app.id.to_string();
    let credentials = (
        app_id.as_str(),
        created.key.as_str(),
        created.secret.as_str(),
    );
    let channels = numbered_channels("c", 100);
    for _ in 0..3 {
        trigger_on_all(&platform.app, credentials, &channels, &"x".repeat(1024)).await;
    }
    let stored = platform.app.metric(HISTORY_BYTES).await;
    assert!(
        stored <= budget as u64,
        "{stored} bytes kept for a plan of {budget}"
    );
    assert!(
        platform.app.metric(HISTORY_EVICTIONS).await >= 280,
        "most of 300 events evicted"
    );
}
