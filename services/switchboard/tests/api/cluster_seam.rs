//! Two edges in one process sharing the cluster-wide parts of one `broker::Cluster` (counters,
//! occupancy, broadcasts, cache channels; each keeps its own `Local` broker): every answer the
//! edge gives about the cluster comes from the injected parts, none from its own node.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use broker::broadcast::{Broadcast, NodeMessage, NodeSink};
use broker::cache::{CacheChannels, CacheLimits, LocalCache};
use broker::counters::{ConnectionCounter, LocalConnections, LocalMessages, LocalPublishRates};
use broker::occupancy::LocalOccupancy;
use broker::{BrokerError, Clock, Cluster, HistoryLimits, Local};
use edge::{EdgeSettings, Hub};
use protocol::names::AppId;
use serde_json::{Value, json};
use switchboard::startup::{Application, ServeSettings};
use tenancy::AppSpec;

use crate::helpers::{APP, TestApp, channel_auth};

/// A broadcast to every edge's hub, as a cluster implementation delivers it.
#[derive(Default)]
struct EveryHub {
    hubs: Mutex<Vec<Arc<Hub>>>,
}

#[async_trait]
impl Broadcast for EveryHub {
    async fn broadcast(&self, message: NodeMessage) -> Result<(), BrokerError> {
        let hubs = self.hubs.lock().unwrap().clone();
        hubs.iter().for_each(|hub| hub.on_message(&message));
        Ok(())
    }
}

/// The parts the two edges share.
struct Shared {
    cluster: Cluster,
    every_hub: Arc<EveryHub>,
}

fn shared() -> Shared {
    let every_hub = Arc::new(EveryHub::default());
    let history = HistoryLimits::default();
    let cache: Arc<dyn CacheChannels> = Arc::new(LocalCache::new(
        CacheLimits {
            max_bytes: history.max_bytes,
            max_channels_per_app: history.max_channels_per_app,
        },
        Clock::system(),
    ));
    // Each edge replaces the broker with its own (see `edge_on`).
    let placeholder_hub = Arc::new(Hub::new(Arc::new(LocalMessages::default())));
    Shared {
        cluster: Cluster {
            broker: Arc::new(Local::new(placeholder_hub)),
            connections: Arc::new(LocalConnections::default()),
            messages: Arc::new(LocalMessages::default()),
            publish_rates: Arc::new(LocalPublishRates::default()),
            occupancy: Arc::new(LocalOccupancy::default()),
            broadcast: every_hub.clone(),
            cache,
        },
        every_hub,
    }
}

/// An edge whose broker is its own and whose other parts are `shared`'s.
async fn edge_on(shared: &Shared) -> TestApp {
    edge_with(shared, |cluster| cluster).await
}

/// Like `edge_on`, with `adjust` changing the edge's parts.
async fn edge_with(shared: &Shared, adjust: impl FnOnce(Cluster) -> Cluster) -> TestApp {
    let settings = ServeSettings {
        host: "127.0.0.1".into(),
        port: 0,
        apps: vec![AppSpec::parse(&format!("{}:{}:{}", APP.0, APP.1, APP.2)).unwrap()],
        edge: EdgeSettings::default(),
    };
    let application = Application::build_on_cluster(settings, |_| {
        let hub = Arc::new(Hub::new(shared.cluster.messages.clone()));
        shared.every_hub.hubs.lock().unwrap().push(hub.clone());
        let cluster = Cluster {
            broker: Arc::new(Local::new(hub.clone())),
            ..shared.cluster.clone()
        };
        (hub, adjust(cluster))
    })
    .expect("server binds");
    let port = application.port();
    let stopper = application.stopper();
    tokio::spawn(application.run_until_stopped());
    TestApp {
        port,
        http: reqwest::Client::new(),
        stopper,
    }
}

#[tokio::test]
async fn channel_queries_terminate_and_the_cache_answer_for_both_edges() {
    let shared = shared();
    let (first, second) = (edge_on(&shared).await, edge_on(&shared).await);

    let (mut subscriber, socket_id) = first.connected(APP.1).await;
    let auth = channel_auth(&socket_id, "private-seam", None);
    let reply = subscriber.subscribe("private-seam", &auth, None).await;
    assert_eq!(reply["event"], "pusher_internal:subscription_succeeded");

    // The second edge holds no connection, yet lists the first edge's subscription.
    let info = [("info", "subscription_count")];
    let listed = second
        .api(APP, "GET", "/apps/app1/channels", &[], None)
        .await;
    assert_eq!(
        listed.json::<Value>().await.unwrap(),
        json!({"channels": {"private-seam": {}}})
    );
    let path = "/apps/app1/channels/private-seam";
    let shown = second.api(APP, "GET", path, &info, None).await;
    assert_eq!(
        shown.json::<Value>().await.unwrap(),
        json!({"occupied": true, "subscription_count": 1})
    );

    // An event cached through the first edge's API replays to a subscriber of the second.
    let body = json!({"name": "e", "channels": ["cache-seam"], "data": "kept"});
    let published = first
        .api(APP, "POST", "/apps/app1/events", &[], Some(&body))
        .await;
    assert_eq!(published.status(), 200);
    let (mut late, _) = second.connected(APP.1).await;
    let reply = late.subscribe("cache-seam", "", None).await;
    assert_eq!(reply["event"], "pusher_internal:subscription_succeeded");
    let cached = late.next_json().await;
    assert_eq!(
        (&cached["event"], &cached["data"]),
        (&json!("e"), &json!("kept"))
    );

    // terminate_connections sent to the second edge closes the user signed in on the first.
    let user_data = json!({"id": "seam-user"}).to_string();
    let signature = protocol::sign::hmac_hex(
        APP.2,
        &protocol::sign::user_auth_string(&socket_id, &user_data),
    );
    subscriber
        .send(json!({"event": "pusher:signin", "data": {
            "auth": format!("{}:{signature}", APP.1), "user_data": user_data}}))
        .await;
    subscriber.expect_event("pusher:signin_success").await;
    let path = "/apps/app1/users/seam-user/terminate_connections";
    let terminated = second.api(APP, "POST", path, &[], Some(&json!({}))).await;
    assert_eq!(terminated.status(), 200);
    let (closed, _) = subscriber.expect_close().await;
    assert_eq!(closed.code, 4009);

    // Its subscription left the shared occupancy: the second edge sees the channel vacant.
    let shown = second
        .api(APP, "GET", "/apps/app1/channels/private-seam", &[], None)
        .await;
    assert_eq!(
        shown.json::<Value>().await.unwrap(),
        json!({"occupied": false})
    );
}

/// A connection counter whose store cannot be reached.
struct Unreachable;

#[async_trait]
impl ConnectionCounter for Unreachable {
    async fn acquire_counted(&self, _: &AppId, _: Option<u64>) -> Result<Option<u64>, BrokerError> {
        Err(BrokerError::Unavailable("no route to the store".into()))
    }
    fn release(&self, _: &AppId) {}
    async fn count(&self, _: &AppId) -> Result<u64, BrokerError> {
        Err(BrokerError::Unavailable("no route to the store".into()))
    }
}

#[tokio::test]
async fn a_connection_count_that_cannot_answer_refuses_with_back_off() {
    let shared = shared();
    let edge = edge_with(&shared, |cluster| Cluster {
        connections: Arc::new(Unreachable),
        ..cluster
    })
    .await;
    let mut refused = edge.connect(APP.1).await;
    let (closed, frames) = refused.expect_close().await;
    assert_eq!(closed.code, 4100, "back off and retry, not a quota refusal");
    let error = frames
        .iter()
        .find(|frame| frame["event"] == "pusher:error")
        .expect("the reason comes first");
    assert_eq!(error["data"]["code"], 4100);
}
