//! The two hooks on a real `EdgeState`: `link::admit` (every carrier's connection admission)
//! and `http_api::authenticate` (every HTTP API request).

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use actix_web::ResponseError;
use broker::counters::{LocalMessages, MessageCounter};
use broker::{Cluster, LocalSpec};
use protocol::codes::CloseReason;
use protocol::names::AppId;
use protocol::sign::hmac_hex;
use tenancy::{AppCatalog, AppSpec, StaticCatalog};

use crate::http_api::{ApiError, authenticate};
use crate::link::admit;
use crate::{EdgeSettings, EdgeState, Hub};

fn edge(settings: EdgeSettings) -> Arc<EdgeState> {
    let messages: Arc<dyn MessageCounter> = Arc::new(LocalMessages::default());
    let hub = Arc::new(Hub::new(messages.clone()));
    let cluster = Cluster::local(LocalSpec {
        node: hub.clone(),
        messages,
        clock: broker::Clock::system(),
        history: broker::HistoryLimits::default(),
    });
    let apps = [
        AppSpec::parse("a:key-a:secret-a").unwrap(),
        AppSpec::parse("b:key-b:secret-b").unwrap(),
    ];
    let catalog: Arc<dyn AppCatalog> = Arc::new(StaticCatalog::new(&apps));
    EdgeState::new(catalog, cluster, hub, settings, None, None)
}

fn app(id: &str) -> AppId {
    AppId::parse(id).unwrap()
}

#[tokio::test]
async fn a_connect_rate_refusal_is_4100_and_never_touches_the_apps_connection_count() {
    let state = edge(EdgeSettings {
        app_connects_per_second: 1,
        ..EdgeSettings::default()
    });
    // The real clock refills one token a second: admit until one is refused (the second, on
    // any machine that takes under a second between two admissions).
    let mut slots = Vec::new();
    let refused = loop {
        match admit(&state, "key-a", "", None).await {
            Ok((_, slot)) if slots.len() < 100 => slots.push(slot),
            Ok(_) => panic!("100 admissions without a refusal at 1 a second"),
            Err(reason) => break reason,
        }
    };
    assert_eq!(refused, CloseReason::AppConnectRateExceeded);
    assert_eq!(CloseReason::AppConnectRateExceeded.disconnect().code, 4100);
    let held = u64::try_from(slots.len()).unwrap();
    assert_eq!(
        state.cluster.connections.count(&app("a")).await.unwrap(),
        held,
        "the refusal took no slot"
    );
    let (_, other) = admit(&state, "key-b", "", None)
        .await
        .expect("b has its own bucket");
    assert_eq!(state.cluster.connections.count(&app("b")).await.unwrap(), 1);
    drop((slots, other));
    assert_eq!(state.cluster.connections.count(&app("a")).await.unwrap(), 0);
}

#[tokio::test]
async fn only_apps_the_catalog_found_are_keys_of_the_connect_rate_table() {
    let state = edge(EdgeSettings {
        app_connects_per_second: 1,
        ..EdgeSettings::default()
    });
    for n in 0..10 {
        assert_eq!(
            admit(&state, &format!("no-such-key-{n}"), "", None)
                .await
                .err(),
            Some(CloseReason::UnknownAppKey)
        );
    }
    assert_eq!(
        state.admission.connects.tracked(),
        0,
        "unknown keys take no entry"
    );
    assert!(admit(&state, "key-a", "", None).await.is_ok());
    assert_eq!(state.admission.connects.tracked(), 1);
}

/// A signed `GET /apps/{app}/channels` for `(key, secret)`, as Pusher's libraries sign it.
fn signed(key: &str, secret: &str) -> actix_web::HttpRequest {
    let path = "/apps/x/channels";
    let timestamp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let query = format!("auth_key={key}&auth_timestamp={timestamp}&auth_version=1.0");
    let signature = hmac_hex(secret, &format!("GET\n{path}\n{query}"));
    actix_web::test::TestRequest::get()
        .uri(&format!("{path}?{query}&auth_signature={signature}"))
        .to_http_request()
}

#[tokio::test]
async fn in_flight_permits_are_taken_after_authentication_per_app_and_given_back_on_drop() {
    let state = edge(EdgeSettings {
        api_in_flight_per_app: 1,
        ..EdgeSettings::default()
    });
    let held = authenticate(&state, &signed("key-a", "secret-a"), &[])
        .await
        .unwrap_or_else(|error| panic!("a's first: {error}"));
    // A's one slot is taken: a's next signed request is refused at once, 429 with
    // Retry-After: 1 and a JSON error.
    let refused = authenticate(&state, &signed("key-a", "secret-a"), &[]).await;
    let Err(error @ ApiError::TooManyInFlight(1)) = refused else {
        panic!("a's second is refused");
    };
    let response = error.error_response();
    assert_eq!(response.status(), 429);
    assert_eq!(response.headers().get("retry-after").unwrap(), "1");
    assert_eq!(
        response.headers().get("content-type").unwrap(),
        "application/json"
    );
    // A wrongly signed request for a is refused as unauthorised, not as busy: it never
    // reaches the slots.
    let forged = authenticate(&state, &signed("key-a", "wrong"), &[]).await;
    assert!(matches!(forged, Err(ApiError::Unauthorized(_))));
    let other = authenticate(&state, &signed("key-b", "secret-b"), &[]).await;
    assert!(other.is_ok(), "b has slots of its own");
    drop(held);
    let again = authenticate(&state, &signed("key-a", "secret-a"), &[]).await;
    assert!(again.is_ok(), "the dropped request gave its slot back");
}
