//! Webhook SSRF: a tenant cannot point webhooks into the operator's network, neither by an
//! internal address in the URL (refused at creation, and again before each attempt) nor by a
//! name that resolves inward (refused at connect time, after resolution); the delivery log
//! holds coarse categories only.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use control::webhooks::WebhookSettings;
use control::webhooks::guard::NameLookup;
use reqwest::StatusCode;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use serde_json::json;
use tenancy::{AddressPolicy, WebhookSink};

use crate::helpers::{spawn_app, spawn_app_allowing_private_webhooks};
use crate::webhook_receiver::Receiver;
use crate::webhook_support::{
    add_webhook_to, fast_settings, has, log_until, occupied, parse_app_id, rows_of, start_sender,
};

#[tokio::test]
async fn webhooks_to_internal_addresses_and_local_names_are_refused_at_creation() {
    let app = spawn_app().await;
    let (session, app_id) = app.signed_up_with_app("ann@example.com", "chat").await;
    let path = format!("/v1/apps/{app_id}/webhooks");
    for url in [
        "http://127.0.0.1:8080/hook",
        "http://127.1/",
        "http://2130706433/",
        "http://0x7f000001/",
        "http://0177.0.0.1/",
        "http://[::1]/",
        "http://[::ffff:127.0.0.1]/",
        "http://[::ffff:7f00:1]/",
        "http://0.0.0.0/",
        "http://10.0.0.1/",
        "http://172.16.5.4/",
        "http://192.168.0.1/",
        "http://169.254.169.254/latest/meta-data/",
        "http://[fe80::1]/",
        "http://100.64.0.1/",
        "http://[fc00::1]/",
        "http://[fd00::1]/",
        "http://224.0.0.1/",
        "http://[ff02::1]/",
        "http://255.255.255.255/",
        "http://[64:ff9b::a00:1]/",
    ] {
        let refused = app.post(&session, &path, json!({ "url": url })).await;
        let message = refused.error(StatusCode::BAD_REQUEST);
        assert!(
            message.contains("public addresses only"),
            "{url}: {message}"
        );
    }
    for url in [
        "http://localhost/",
        "http://localhost./",
        "http://hooks.localhost:9000/",
        "http://metadata.google.internal/",
        "http://metadata/",
    ] {
        let refused = app.post(&session, &path, json!({ "url": url })).await;
        let message = refused.error(StatusCode::BAD_REQUEST);
        assert!(message.contains("local name"), "{url}: {message}");
    }
    // Other protocols' ports on public hosts (a POST to SMTP is a cross-protocol attack).
    for url in ["http://mail.example.com:25/", "https://example.com:22/"] {
        let refused = app.post(&session, &path, json!({ "url": url })).await;
        let message = refused.error(StatusCode::BAD_REQUEST);
        assert!(message.contains("another protocol"), "{url}: {message}");
    }
    assert_eq!(app.count("webhooks").await, 0);
    // Public targets are fine.
    for url in [
        "https://hooks.example.com/pusher",
        "http://93.184.216.34:8080/x",
    ] {
        let created = app.post(&session, &path, json!({ "url": url })).await;
        created.ok(StatusCode::CREATED);
    }
}

#[tokio::test]
async fn the_operator_setting_allows_private_targets() {
    let app = spawn_app_allowing_private_webhooks().await;
    let (session, app_id) = app.signed_up_with_app("ann@example.com", "chat").await;
    for url in [
        "http://127.0.0.1:9/x",
        "http://localhost:8080/",
        "http://10.1.2.3/",
    ] {
        add_webhook_to(&app, &session, &app_id, url).await;
    }
}

/// A lookup from a fixed table: what a DNS server that "rebinds" a public-looking name to an
/// internal address answers.
struct Rebinding(HashMap<String, IpAddr>);

impl Resolve for Rebinding {
    fn resolve(&self, name: Name) -> Resolving {
        let found = self.0.get(name.as_str()).copied();
        Box::pin(async move {
            let addresses: Vec<SocketAddr> =
                found.map(|ip| SocketAddr::new(ip, 0)).into_iter().collect();
            Ok(Box::new(addresses.into_iter()) as Addrs)
        })
    }
}

fn rebinding_settings(addresses: AddressPolicy) -> WebhookSettings {
    let table = HashMap::from([(
        "rebound.example.com".to_owned(),
        IpAddr::from([127, 0, 0, 1]),
    )]);
    WebhookSettings {
        addresses,
        lookup: NameLookup(Arc::new(Rebinding(table))),
        ..fast_settings()
    }
}

#[tokio::test]
async fn a_name_that_resolves_to_loopback_is_refused_at_connect_time() {
    // The API refuses internal addresses, so the name passes; its resolution is what points
    // inward (as a DNS rebinding attack would, after creation).
    let app = spawn_app().await;
    let (session, app_id) = app.signed_up_with_app("ann@example.com", "chat").await;
    let mut receiver = Receiver::start();
    let port = receiver.base.rsplit(':').next().unwrap().to_owned();
    let url = format!("http://rebound.example.com:{port}/inside");
    let hook = add_webhook_to(&app, &session, &app_id, &url).await;

    let strict = start_sender(&app, rebinding_settings(AddressPolicy::PublicOnly));
    strict.emit(&parse_app_id(&app_id), occupied("room"));
    let log = log_until(&app, &session, &app_id, |rows| has(rows, &hook, "failed")).await;
    let rows = rows_of(&log, &hook);
    assert!(rows.len() >= 2, "{rows:?}");
    assert!(
        rows.iter()
            .all(|row| row["error"] == "forbidden_address" && row["http_status"].is_null()),
        "{rows:?}"
    );
    strict.shutdown().await;
    assert!(
        receiver.requests.try_recv().is_err(),
        "nothing reached the internal endpoint"
    );

    // The same name with private targets allowed does reach it: the guard made the difference.
    let open = start_sender(&app, rebinding_settings(AddressPolicy::AllowPrivate));
    open.emit(&parse_app_id(&app_id), occupied("hall"));
    let arrived = receiver.until("/inside", "channel_occupied").await;
    assert_eq!(
        arrived.last().unwrap().json()["events"],
        json!([{ "name": "channel_occupied", "channel": "hall" }])
    );
}

#[tokio::test]
async fn an_internal_address_stored_before_is_refused_before_each_attempt() {
    // A webhook made while private targets were allowed, sent by a sender that refuses them
    // (IP literals never reach the resolver, so the URL itself is checked).
    let app = spawn_app_allowing_private_webhooks().await;
    let (session, app_id) = app.signed_up_with_app("ann@example.com", "chat").await;
    let mut receiver = Receiver::start();
    let literal = add_webhook_to(
        &app,
        &session,
        &app_id,
        &format!("{}/literal", receiver.base),
    )
    .await;
    let local = add_webhook_to(
        &app,
        &session,
        &app_id,
        &format!("{}/local", receiver.base.replace("127.0.0.1", "localhost")),
    )
    .await;
    let strict = WebhookSettings {
        addresses: AddressPolicy::PublicOnly,
        ..fast_settings()
    };
    let sink = start_sender(&app, strict);
    sink.emit(&parse_app_id(&app_id), occupied("room"));
    let log = log_until(&app, &session, &app_id, |rows| {
        has(rows, &literal, "failed") && has(rows, &local, "failed")
    })
    .await;
    assert!(
        log.iter().all(|row| row["error"] == "forbidden_address"),
        "{log:?}"
    );
    sink.shutdown().await;
    assert!(receiver.requests.try_recv().is_err());
}

#[tokio::test]
async fn the_delivery_log_keeps_categories_not_error_text() {
    let app = spawn_app_allowing_private_webhooks().await;
    let (session, app_id) = app.signed_up_with_app("ann@example.com", "chat").await;
    let receiver = Receiver::start();
    // TLS spoken to a plain HTTP server; a name that does not resolve.
    let tls = add_webhook_to(
        &app,
        &session,
        &app_id,
        &format!("{}/tls", receiver.base.replace("http://", "https://")),
    )
    .await;
    let dns = add_webhook_to(&app, &session, &app_id, "http://nowhere.invalid/hook").await;
    // Names resolve from an empty table (no network needed): `nowhere.invalid` has no address.
    let settings = WebhookSettings {
        lookup: NameLookup(Arc::new(Rebinding(HashMap::new()))),
        ..fast_settings()
    };
    let sink = start_sender(&app, settings);
    sink.emit(&parse_app_id(&app_id), occupied("room"));
    let log = log_until(&app, &session, &app_id, |rows| {
        has(rows, &tls, "failed") && has(rows, &dns, "failed")
    })
    .await;
    assert!(
        rows_of(&log, &tls).iter().all(|row| row["error"] == "tls"),
        "{log:?}"
    );
    assert!(
        rows_of(&log, &dns).iter().all(|row| row["error"] == "dns"),
        "{log:?}"
    );
    sink.shutdown().await;
}
