use protocol::codes::CloseReason;
use protocol::names::SocketId;

use super::*;
use crate::outbox::OutboxBounds;

fn outbox() -> Arc<Outbox> {
    let bounds = OutboxBounds {
        frames: 16,
        bytes: 1024,
        stats: Arc::default(),
    };
    Arc::new(Outbox::new(SocketId::parse("1.1").unwrap(), bounds))
}

#[test]
fn a_connection_that_registers_after_the_shutdown_is_shut_down_at_once() {
    let hub = Hub::new(Arc::new(broker::counters::LocalMessages::default()));
    let app = AppId::parse("app").unwrap();
    let before = outbox();
    hub.connect(&app, &before);
    hub.shut_down_all();
    assert_eq!(before.close_reason(), Some(CloseReason::ServerShuttingDown));
    // Admitted before the drain refused newcomers, registered after the shutdown.
    let late = outbox();
    hub.connect(&app, &late);
    assert_eq!(late.close_reason(), Some(CloseReason::ServerShuttingDown));
    hub.disconnect(&app, &late);
    hub.disconnect(&app, &before);
}

/// Counts what a subscriber's layers are asked to do: spans made, fields recorded, events.
#[derive(Clone, Default)]
struct Counted(Arc<std::sync::Mutex<[usize; 3]>>);

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Counted {
    fn on_new_span(
        &self,
        _: &tracing::span::Attributes<'_>,
        _: &tracing::span::Id,
        _: tracing_subscriber::layer::Context<'_, S>,
    ) {
        self.0.lock().unwrap()[0] += 1;
    }
    fn on_record(
        &self,
        _: &tracing::span::Id,
        _: &tracing::span::Record<'_>,
        _: tracing_subscriber::layer::Context<'_, S>,
    ) {
        self.0.lock().unwrap()[1] += 1;
    }
    fn on_event(&self, _: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        self.0.lock().unwrap()[2] += 1;
    }
}

/// What one publication through `Local` costs the tracing layers with `subscribers`
/// subscribers, with the layer taking `level` and below.
async fn traced_work(subscribers: usize, level: tracing::Level) -> [usize; 3] {
    use tracing_subscriber::layer::SubscriberExt;
    let counted = Counted::default();
    let filter = tracing_subscriber::filter::LevelFilter::from_level(level);
    let subscriber = tracing_subscriber::Registry::default().with(
        tracing_subscriber::Layer::with_filter(counted.clone(), filter),
    );
    let _default = tracing::subscriber::set_default(subscriber);
    let hub = Arc::new(Hub::new(Arc::new(
        broker::counters::LocalMessages::default(),
    )));
    let broker = broker::Local::new(hub.clone());
    let (app, channel) = (
        AppId::parse("app").unwrap(),
        ChannelName::parse("news").unwrap(),
    );
    let bounds = OutboxBounds {
        frames: 16,
        bytes: 1024,
        stats: Arc::default(),
    };
    let outboxes: Vec<_> = (0..subscribers)
        .map(|n| {
            Arc::new(Outbox::new(
                SocketId::parse(&format!("1.{n}")).unwrap(),
                bounds.clone(),
            ))
        })
        .collect();
    for outbox in &outboxes {
        hub.subscribe(&app, &channel, outbox);
    }
    let publication = Publication {
        app: app.clone(),
        channel: channel.clone(),
        frame: "{}".into(),
        except: None,
        history: None,
        serial: None,
    };
    let before = *counted.0.lock().unwrap();
    broker::Broker::publish(&broker, publication).await.unwrap();
    let after = *counted.0.lock().unwrap();
    assert!(
        outboxes.iter().all(|outbox| outbox.queued_bytes() > 0),
        "delivered"
    );
    [0, 1, 2].map(|n| after[n] - before[n])
}

#[tokio::test]
async fn tracing_does_no_work_per_subscriber_and_none_at_all_with_traces_off() {
    // Traces on (the trace layer takes `debug`): one delivery span and one recorded
    // subscriber count per publication, whether it reaches one subscriber or a hundred.
    let on = traced_work(1, tracing::Level::DEBUG).await;
    assert_eq!(on, [1, 1, 0]);
    assert_eq!(traced_work(100, tracing::Level::DEBUG).await, on);
    // Traces off (logs take `info`, the default): no span, no record, no event.
    assert_eq!(traced_work(1, tracing::Level::INFO).await, [0, 0, 0]);
    assert_eq!(traced_work(100, tracing::Level::INFO).await, [0, 0, 0]);
}
