//! Pusher's grace period: `channel_vacated` and `member_removed` wait ~3 s and are dropped,
//! together with the `channel_occupied` / `member_added` that cancels them, when the channel
//! or member comes back meanwhile (a page reload, a brief network drop).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use protocol::names::AppId;
use tenancy::WebhookEvent;

/// What a held event is waiting for: the channel, and for presence the user.
type HeldKey = (AppId, String, Option<String>);

/// Holds leave events for `delay`; pure, time is an argument.
#[derive(Debug)]
pub struct Delayer {
    delay: Duration,
    held: HashMap<HeldKey, (Instant, WebhookEvent)>,
}

impl Delayer {
    pub fn new(delay: Duration) -> Self {
        Self {
            delay,
            held: HashMap::new(),
        }
    }

    /// Takes an event; returns it when it may go out now. Leave events are held; a join that
    /// finds its leave held cancels both.
    pub fn offer(&mut self, app: AppId, event: WebhookEvent, now: Instant) -> Option<WebhookEvent> {
        match &event {
            WebhookEvent::ChannelVacated { channel } => {
                let key = (app, channel.clone(), None);
                self.held.insert(key, (now + self.delay, event));
                None
            }
            WebhookEvent::MemberRemoved { channel, user_id } => {
                let key = (app, channel.clone(), Some(user_id.clone()));
                self.held.insert(key, (now + self.delay, event));
                None
            }
            WebhookEvent::ChannelOccupied { channel } => {
                let key = (app, channel.clone(), None);
                self.held.remove(&key).is_none().then_some(event)
            }
            WebhookEvent::MemberAdded { channel, user_id } => {
                let key = (app, channel.clone(), Some(user_id.clone()));
                self.held.remove(&key).is_none().then_some(event)
            }
            _ => Some(event),
        }
    }

    /// Held events whose delay has passed, oldest first.
    pub fn due(&mut self, now: Instant) -> Vec<(AppId, WebhookEvent)> {
        let due_keys: Vec<HeldKey> = self
            .held
            .iter()
            .filter(|(_, (at, _))| *at <= now)
            .map(|(key, _)| key.clone())
            .collect();
        let mut due: Vec<(Instant, AppId, WebhookEvent)> = due_keys
            .into_iter()
            .filter_map(|key| {
                let (at, event) = self.held.remove(&key)?;
                Some((at, key.0, event))
            })
            .collect();
        due.sort_by_key(|(at, _, _)| *at);
        due.into_iter()
            .map(|(_, app, event)| (app, event))
            .collect()
    }

    /// Every held event at once (at shutdown).
    pub fn drain(&mut self) -> Vec<(AppId, WebhookEvent)> {
        self.due(Instant::now() + self.delay)
    }

    /// When the next held event falls due.
    pub fn next_due(&self) -> Option<Instant> {
        self.held.values().map(|(at, _)| *at).min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app() -> AppId {
        AppId::parse("1").unwrap()
    }

    fn vacated(channel: &str) -> WebhookEvent {
        WebhookEvent::ChannelVacated {
            channel: channel.into(),
        }
    }

    fn occupied(channel: &str) -> WebhookEvent {
        WebhookEvent::ChannelOccupied {
            channel: channel.into(),
        }
    }

    #[test]
    fn leaves_wait_for_the_delay() {
        let start = Instant::now();
        let mut delayer = Delayer::new(Duration::from_secs(3));
        assert_eq!(
            delayer.offer(app(), occupied("c"), start),
            Some(occupied("c"))
        );
        assert_eq!(delayer.offer(app(), vacated("c"), start), None);
        assert_eq!(delayer.next_due(), Some(start + Duration::from_secs(3)));
        assert!(delayer.due(start + Duration::from_millis(2999)).is_empty());
        assert_eq!(
            delayer.due(start + Duration::from_secs(3)),
            vec![(app(), vacated("c"))]
        );
        assert_eq!(delayer.next_due(), None);
    }

    #[test]
    fn coming_back_within_the_delay_cancels_both() {
        let start = Instant::now();
        let mut delayer = Delayer::new(Duration::from_secs(3));
        delayer.offer(app(), vacated("c"), start);
        assert_eq!(
            delayer.offer(app(), occupied("c"), start + Duration::from_secs(1)),
            None
        );
        assert!(delayer.due(start + Duration::from_secs(10)).is_empty());

        let removed = WebhookEvent::MemberRemoved {
            channel: "presence-c".into(),
            user_id: "u1".into(),
        };
        let added = |user: &str| WebhookEvent::MemberAdded {
            channel: "presence-c".into(),
            user_id: user.into(),
        };
        delayer.offer(app(), removed.clone(), start);
        // Another user joining does not cancel u1's leave.
        assert_eq!(delayer.offer(app(), added("u2"), start), Some(added("u2")));
        assert_eq!(delayer.offer(app(), added("u1"), start), None);
        assert!(delayer.due(start + Duration::from_secs(10)).is_empty());
    }

    #[test]
    fn other_apps_and_events_pass_straight_through() {
        let start = Instant::now();
        let mut delayer = Delayer::new(Duration::from_secs(3));
        delayer.offer(app(), vacated("c"), start);
        let other = AppId::parse("2").unwrap();
        assert_eq!(
            delayer.offer(other, occupied("c"), start),
            Some(occupied("c"))
        );
        let miss = WebhookEvent::CacheMiss {
            channel: "cache-c".into(),
        };
        assert_eq!(delayer.offer(app(), miss.clone(), start), Some(miss));
        assert_eq!(delayer.drain(), vec![(app(), vacated("c"))]);
    }
}
