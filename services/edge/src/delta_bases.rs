//! The previous event (its stamp and `data`) of every channel that has a delta subscriber on this node, so each
//! publication's delta is computed once (`protocol::delta::delta_against`), before fan-out,
//! and every subscriber's outbox picks the delta or the full frame (`Outbox::push_publication`).
//!
//! Each node computes from the events it receives, in serial order (the broker delivers a
//! channel's publications one at a time, in serial order): a gap in serials (a broker
//! reconnect, frames this node never saw) makes the next event full, and it becomes the new
//! base. Bounded: at most `MAX_CHANNELS` channels (`MAX_CHANNELS_PER_APP` per app, so one
//! tenant cannot take every slot), at most `MAX_BASE_BYTES` bytes of bases on the node, each
//! at most `protocol::delta::MAX_DELTA_EVENT_BYTES`; past a bound a channel gets full events.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use broker::Publication;
use bytestring::ByteString;
use protocol::delta::{self, Base, ChannelEvent, Delta, MAX_DELTA_EVENT_BYTES};
use protocol::names::{AppId, ChannelName};

/// Channels with a delta subscriber that this node keeps a base for.
pub const MAX_CHANNELS: usize = 10_000;
/// Of which one app may take at most this many.
pub const MAX_CHANNELS_PER_APP: usize = 1_000;
/// Bytes of base frames this node keeps at most.
pub const MAX_BASE_BYTES: usize = 32 * 1024 * 1024;

type ChannelKey = (AppId, ChannelName);

#[derive(Debug, Default)]
pub struct DeltaBases {
    channels: Mutex<Channels>,
    /// Bytes of every kept base, against `MAX_BASE_BYTES`.
    bytes: AtomicUsize,
}

#[derive(Debug, Default)]
struct Channels {
    by_channel: HashMap<ChannelKey, Arc<DeltaChannel>>,
    per_app: HashMap<AppId, usize>,
}

#[derive(Debug, Default)]
struct DeltaChannel {
    /// Delta subscribers on this node; the entry goes with the last one.
    subscribers: AtomicUsize,
    /// Under its own lock: one channel's publications arrive one at a time, so it is never
    /// contended, and computing a delta never holds up another channel.
    previous: Mutex<Option<Base>>,
}

impl DeltaBases {
    /// A delta subscriber joined the channel. False when the bounds leave no room for the
    /// channel: that subscriber then gets full events (and must not call `unsubscribed`).
    pub fn subscribed(&self, app: &AppId, channel: &ChannelName) -> bool {
        let mut channels = self.channels.lock().expect("delta bases lock poisoned");
        let key = (app.clone(), channel.clone());
        if let Some(entry) = channels.by_channel.get(&key) {
            entry.subscribers.fetch_add(1, Ordering::Relaxed);
            return true;
        }
        let of_app = channels.per_app.get(app).copied().unwrap_or(0);
        if channels.by_channel.len() >= MAX_CHANNELS || of_app >= MAX_CHANNELS_PER_APP {
            return false;
        }
        let entry = Arc::new(DeltaChannel::default());
        entry.subscribers.store(1, Ordering::Relaxed);
        channels.by_channel.insert(key, entry);
        *channels.per_app.entry(app.clone()).or_default() += 1;
        true
    }

    /// A delta subscriber for which `subscribed` was true left the channel.
    pub fn unsubscribed(&self, app: &AppId, channel: &ChannelName) {
        let mut channels = self.channels.lock().expect("delta bases lock poisoned");
        let key = (app.clone(), channel.clone());
        let Some(entry) = channels.by_channel.get(&key) else {
            return;
        };
        if entry.subscribers.fetch_sub(1, Ordering::Relaxed) > 1 {
            return;
        }
        if let Some(entry) = channels.by_channel.remove(&key) {
            let kept = entry
                .previous
                .lock()
                .expect("delta base lock poisoned")
                .take();
            self.release(kept.as_ref());
        }
        if let Some(of_app) = channels.per_app.get_mut(app) {
            *of_app -= 1;
            if *of_app == 0 {
                channels.per_app.remove(app);
            }
        }
    }

    /// The publication's delta against the channel's previous event, if the channel has
    /// delta subscribers and a delta is worth sending; the publication becomes the next base.
    pub fn next(&self, publication: &Publication) -> Option<Delta<ByteString>> {
        publication.serial?;
        let entry = {
            let channels = self.channels.lock().expect("delta bases lock poisoned");
            let key = (publication.app.clone(), publication.channel.clone());
            channels.by_channel.get(&key)?.clone()
        };
        let mut previous = entry.previous.lock().expect("delta base lock poisoned");
        let Some(event) = ChannelEvent::parse(&publication.frame) else {
            self.release(previous.take().as_ref());
            return None;
        };
        let channel = publication.channel.as_str();
        let computed =
            delta::delta_against(channel, previous.as_ref(), &event, publication.frame.len());
        self.release(previous.take().as_ref());
        let base = Base {
            stamp: event.stamp(),
            data: event.data,
        };
        let size = base.len();
        let fits = base.data.len() <= MAX_DELTA_EVENT_BYTES
            && self.bytes.fetch_add(size, Ordering::Relaxed) + size <= MAX_BASE_BYTES;
        if fits {
            *previous = Some(base);
        } else if base.data.len() <= MAX_DELTA_EVENT_BYTES {
            // Over the node's budget: no base kept, the next event goes out full.
            self.bytes.fetch_sub(size, Ordering::Relaxed);
        }
        computed.map(|computed| Delta {
            base: computed.base,
            frame: computed.frame.into(),
        })
    }

    /// Bytes of bases kept now (tests and diagnostics).
    pub fn kept_bytes(&self) -> usize {
        self.bytes.load(Ordering::Relaxed)
    }

    /// Channels with a base slot now (tests and diagnostics).
    pub fn channel_count(&self) -> usize {
        let channels = self.channels.lock().expect("delta bases lock poisoned");
        channels.by_channel.len()
    }

    fn release(&self, base: Option<&Base>) {
        if let Some(base) = base {
            self.bytes.fetch_sub(base.len(), Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn publication(channel: &str, serial: u64, data: &str) -> Publication {
        let event = protocol::wire::channel_event("tick", channel, data, None);
        Publication {
            app: AppId::parse("app").unwrap(),
            channel: ChannelName::parse(channel).unwrap(),
            frame: broker::stamp(&event, serial, "e1"),
            except: None,
            history: None,
            serial: Some(serial),
        }
    }

    fn document(changed: u64) -> String {
        (0..50)
            .map(|i| {
                format!(
                    "{{\"s\":\"SYM{i}\",\"p\":{}}}",
                    100 + i + u64::from(i == changed)
                )
            })
            .collect::<Vec<_>>()
            .join(",")
    }

    #[test]
    fn deltas_only_for_channels_with_a_delta_subscriber_and_only_after_a_base() {
        let bases = DeltaBases::default();
        let (app, ticker) = (
            AppId::parse("app").unwrap(),
            ChannelName::parse("t").unwrap(),
        );
        assert_eq!(bases.next(&publication("t", 1, &document(1))), None);
        assert!(bases.subscribed(&app, &ticker));
        assert_eq!(
            bases.next(&publication("t", 2, &document(2))),
            None,
            "no base yet"
        );
        let delta = bases.next(&publication("t", 3, &document(3))).unwrap();
        assert_eq!(delta.base, 2);
        // A gap in serials: no delta, and the event is the new base.
        assert_eq!(bases.next(&publication("t", 5, &document(5))), None);
        assert_eq!(
            bases.next(&publication("t", 6, &document(6))).unwrap().base,
            5
        );
        assert!(bases.kept_bytes() > 0);
        bases.unsubscribed(&app, &ticker);
        assert_eq!((bases.channel_count(), bases.kept_bytes()), (0, 0));
        assert_eq!(bases.next(&publication("t", 7, &document(7))), None);
    }

    #[test]
    fn one_app_takes_at_most_its_share_of_channels() {
        let bases = DeltaBases::default();
        let greedy = AppId::parse("greedy").unwrap();
        for n in 0..MAX_CHANNELS_PER_APP {
            assert!(bases.subscribed(&greedy, &ChannelName::parse(&format!("c{n}")).unwrap()));
        }
        let one_more = ChannelName::parse("one-more").unwrap();
        assert!(!bases.subscribed(&greedy, &one_more));
        assert!(bases.subscribed(&AppId::parse("other").unwrap(), &one_more));
        // A second subscriber of a channel that has a slot always gets deltas.
        assert!(bases.subscribed(&greedy, &ChannelName::parse("c0").unwrap()));
        assert_eq!(bases.channel_count(), MAX_CHANNELS_PER_APP + 1);
    }
}
