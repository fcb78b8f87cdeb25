//! The `subs` parameter of our HTTP carriers' downstream requests: a JSON array of
//! `{"channel", "auth"?, "channel_data"?}`, the subscriptions any edge needs to rebuild a
//! session. Pure, so a fuzz target can feed it any bytes.

use serde::Deserialize;
use serde_json::json;

use crate::names::{ChannelName, NameError};

/// The most subscriptions one request may name (a plan's channels per connection is smaller;
/// the edge keeps at most that many).
pub const MAX_SUBS: usize = 1_000;
/// The longest `auth` accepted (`key:` and 64 hex digits; keys are at most 64 characters).
const MAX_AUTH_LEN: usize = 256;
/// The longest `channel_data` accepted (presence member data; a WebSocket frame is 64 KiB).
const MAX_CHANNEL_DATA_LEN: usize = 64 * 1024;

/// One subscription a downstream request asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sub {
    pub channel: ChannelName,
    pub auth: Option<String>,
    pub channel_data: Option<String>,
    /// The delta format the subscription asked for (`crate::delta`), passed on to the
    /// subscribe, which refuses one it does not know.
    pub delta: Option<String>,
}

/// The longest `delta` accepted (a format's name).
const MAX_DELTA_LEN: usize = 16;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubsError {
    #[error("subs must be a JSON array of {{channel, auth?, channel_data?, delta?}}")]
    Malformed,
    #[error("subs may name at most {MAX_SUBS} channels")]
    TooMany,
    #[error("subs names an invalid channel: {0}")]
    Channel(NameError),
    #[error("a subs entry's auth, channel_data or delta is too long")]
    TooLong,
}

impl Sub {
    /// The `pusher:subscribe` frame a session is fed for this subscription, resuming from
    /// `position` (the cursor's `(epoch, serial)` for the channel) when there is one.
    pub fn subscribe_frame(&self, position: Option<&(String, u64)>) -> serde_json::Value {
        let mut data = json!({ "channel": self.channel.as_ref() });
        if let Some(auth) = &self.auth {
            data["auth"] = json!(auth);
        }
        if let Some(channel_data) = &self.channel_data {
            data["channel_data"] = json!(channel_data);
        }
        if let Some(delta) = &self.delta {
            data["delta"] = json!(delta);
        }
        if let Some((epoch, serial)) = position {
            data["resume"] = json!({ "serial": serial, "epoch": epoch });
        }
        json!({ "event": "pusher:subscribe", "data": data })
    }
}

#[derive(Deserialize)]
struct RawSub {
    channel: String,
    #[serde(default)]
    auth: Option<String>,
    #[serde(default)]
    channel_data: Option<String>,
    #[serde(default)]
    delta: Option<String>,
}

/// Parses `subs`; duplicates are kept (subscribing twice is answered like a WebSocket's).
pub fn parse_subs(text: &str) -> Result<Vec<Sub>, SubsError> {
    // Counted before parsing the entries: an overlong array is refused without building it.
    let raw: Vec<serde_json::Value> =
        serde_json::from_str(text).map_err(|_| SubsError::Malformed)?;
    if raw.len() > MAX_SUBS {
        return Err(SubsError::TooMany);
    }
    raw.into_iter()
        .map(|entry| {
            let entry: RawSub = serde_json::from_value(entry).map_err(|_| SubsError::Malformed)?;
            let channel = ChannelName::parse(&entry.channel).map_err(SubsError::Channel)?;
            let too_long = entry.auth.as_ref().is_some_and(|a| a.len() > MAX_AUTH_LEN)
                || entry
                    .channel_data
                    .as_ref()
                    .is_some_and(|d| d.len() > MAX_CHANNEL_DATA_LEN)
                || entry
                    .delta
                    .as_ref()
                    .is_some_and(|d| d.len() > MAX_DELTA_LEN);
            if too_long {
                return Err(SubsError::TooLong);
            }
            Ok(Sub {
                channel,
                auth: entry.auth,
                channel_data: entry.channel_data,
                delta: entry.delta,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subscriptions_parse_with_their_auth() {
        let subs = parse_subs(
            r#"[{"channel":"news"},{"channel":"private-a","auth":"k:s"},
                {"channel":"presence-b","auth":"k:t","channel_data":"{\"user_id\":\"1\"}"}]"#,
        )
        .unwrap();
        assert_eq!(subs.len(), 3);
        assert_eq!(subs[1].channel.as_ref(), "private-a");
        assert_eq!(subs[1].auth.as_deref(), Some("k:s"));
        assert_eq!(subs[2].channel_data.as_deref(), Some(r#"{"user_id":"1"}"#));
        assert_eq!(parse_subs("[]"), Ok(Vec::new()));
    }

    #[test]
    fn bad_subs_are_refused_with_a_reason() {
        assert_eq!(parse_subs("{}"), Err(SubsError::Malformed));
        assert_eq!(parse_subs(r#"[{"chan":"x"}]"#), Err(SubsError::Malformed));
        assert_eq!(parse_subs(r#"[{"channel":1}]"#), Err(SubsError::Malformed));
        assert!(matches!(
            parse_subs(r#"[{"channel":"bad name"}]"#),
            Err(SubsError::Channel(_))
        ));
        let many = format!("[{}]", vec![r#"{"channel":"a"}"#; MAX_SUBS + 1].join(","));
        assert_eq!(parse_subs(&many), Err(SubsError::TooMany));
        let long_auth = format!(
            r#"[{{"channel":"private-a","auth":"{}"}}]"#,
            "a".repeat(300)
        );
        assert_eq!(parse_subs(&long_auth), Err(SubsError::TooLong));
        let long_delta = format!(r#"[{{"channel":"a","delta":"{}"}}]"#, "f".repeat(17));
        assert_eq!(parse_subs(&long_delta), Err(SubsError::TooLong));
    }

    #[test]
    fn a_rebuilt_subscription_asks_for_deltas_again() {
        let subs = parse_subs(r#"[{"channel":"ticker","delta":"fossil"}]"#).unwrap();
        let position = ("e1".to_owned(), 4);
        let frame = subs[0].subscribe_frame(Some(&position));
        assert_eq!(frame["data"]["delta"], "fossil");
        assert_eq!(frame["data"]["resume"]["serial"], 4);
    }
}
