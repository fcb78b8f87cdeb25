//! What one request carries: the events an endpoint asked for, as Pusher's body
//! `{"time_ms":…,"events":[…]}`, signed over the exact bytes sent.

use tenancy::WebhookEvent;
use uuid::Uuid;

/// One configured endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub id: Uuid,
    pub url: String,
    /// Event names it receives; empty means all.
    pub event_types: Vec<String>,
    /// Several events per request instead of one.
    pub batching: bool,
}

impl Target {
    pub fn accepts(&self, name: &str) -> bool {
        self.event_types.is_empty() || self.event_types.iter().any(|t| t == name)
    }
}

/// A request ready to send: the body, its signature and the headers' key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedBody {
    pub body: String,
    pub key: String,
    pub signature: String,
    pub event_count: usize,
}

/// Pusher's body for `events` at `time_ms`: `{"time_ms":…,"events":[…]}`.
pub fn body(events: &[WebhookEvent], time_ms: u64) -> String {
    #[derive(serde::Serialize)]
    struct Body<'a> {
        time_ms: u64,
        events: &'a [WebhookEvent],
    }
    serde_json::to_string(&Body { time_ms, events }).expect("webhook events always serialise")
}

/// `body` signed with the key's secret: `X-Pusher-Signature` = hex HMAC-SHA256 of the body.
pub fn sign_body(body: String, event_count: usize, key: &str, secret: &str) -> SignedBody {
    let signature = protocol::sign::hmac_hex(secret, &body);
    SignedBody {
        body,
        key: key.to_owned(),
        signature,
        event_count,
    }
}

/// The body for `events` at `time_ms`, signed with the key's secret.
pub fn sign(events: &[WebhookEvent], time_ms: u64, key: &str, secret: &str) -> SignedBody {
    sign_body(body(events, time_ms), events.len(), key, secret)
}

/// Splits an endpoint's events into requests: one event each, or up to `max_batch` each for
/// an endpoint with batching.
pub fn requests(
    target: &Target,
    events: Vec<WebhookEvent>,
    max_batch: usize,
) -> Vec<Vec<WebhookEvent>> {
    let size = if target.batching { max_batch.max(1) } else { 1 };
    let mut requests = Vec::new();
    let mut events = events.into_iter().peekable();
    while events.peek().is_some() {
        requests.push(events.by_ref().take(size).collect());
    }
    requests
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(types: &[&str], batching: bool) -> Target {
        Target {
            id: Uuid::nil(),
            url: "http://127.0.0.1/hook".into(),
            event_types: types.iter().map(|t| (*t).to_owned()).collect(),
            batching,
        }
    }

    fn occupied(n: usize) -> WebhookEvent {
        WebhookEvent::ChannelOccupied {
            channel: format!("c{n}"),
        }
    }

    #[test]
    fn endpoints_receive_only_the_event_types_they_asked_for() {
        assert!(target(&[], false).accepts("client_event"));
        let presence = target(&["member_added", "member_removed"], false);
        assert!(presence.accepts("member_removed"));
        assert!(!presence.accepts("channel_occupied"));
    }

    #[test]
    fn the_body_is_pushers_shape_signed_over_its_exact_bytes() {
        // Key and secret of Pusher's documented examples.
        let signed = sign(
            &[occupied(1)],
            1327078148132,
            "278d425bdf160c739803",
            "7ad3773142a6692b25b8",
        );
        assert_eq!(
            signed.body,
            r#"{"time_ms":1327078148132,"events":[{"name":"channel_occupied","channel":"c1"}]}"#
        );
        assert_eq!(signed.key, "278d425bdf160c739803");
        assert_eq!(
            signed.signature,
            protocol::sign::hmac_hex("7ad3773142a6692b25b8", &signed.body)
        );
        assert_eq!(signed.signature.len(), 64);
        assert_eq!(signed.event_count, 1);
    }

    #[test]
    fn one_event_per_request_unless_batching_then_up_to_the_batch_size() {
        let events: Vec<WebhookEvent> = (0..250).map(occupied).collect();
        let single = requests(&target(&[], false), events[..3].to_vec(), 100);
        assert_eq!(single.len(), 3);
        assert!(single.iter().all(|request| request.len() == 1));
        let batched = requests(&target(&[], true), events.clone(), 100);
        let sizes: Vec<usize> = batched.iter().map(Vec::len).collect();
        assert_eq!(sizes, [100, 100, 50]);
        assert_eq!(batched.concat(), events);
        assert!(requests(&target(&[], true), Vec::new(), 100).is_empty());
    }
}
