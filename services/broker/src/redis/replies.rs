//! What Redis answers, turned into the broker's types: pub/sub messages into deliveries,
//! script replies into histories and members. Anything unexpected is an error, never a panic.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytestring::ByteString;
use protocol::names::{AppId, ChannelName, SocketId, UserId};
use protocol::wire::Member;
use redis::{PushInfo, PushKind, Value};

use super::connection::message_payload;

use crate::{BrokerError, DeliverySink, History, Publication};

/// Turns pub/sub messages into deliveries to this node's sink, in the order they arrive.
pub struct Deliveries {
    pub sink: Arc<dyn DeliverySink>,
    /// Bumped on every loss of the subscription connection.
    pub generation: Arc<AtomicU64>,
}

impl Deliveries {
    pub fn push(&self, push: PushInfo) {
        if push.kind == PushKind::Disconnection {
            // The manager reconnects and resubscribes by itself, but what was published
            // meanwhile never reaches this node live: its subscribers must resume (the history
            // replays the gap, or `resume_failed` says it is gone). The generation makes the
            // next subscribe of each channel confirm its subscription anew.
            tracing::warn!(
                "lost the broker's subscription connection; reconnecting, subscribers resume"
            );
            self.generation.fetch_add(1, Ordering::SeqCst);
            self.sink.deliveries_interrupted();
            return;
        }
        let Some(payload) = message_payload(&push, "broker") else {
            return;
        };
        match decode(payload) {
            Some(publication) => self.sink.deliver(&publication),
            None => tracing::warn!("a malformed message on a broker channel was dropped"),
        }
    }
}

/// `serial\nexcept\napp\nchannel\nframe`, as the steps publish it (an empty serial or except
/// for none).
pub fn encode_head(publication: &Publication) -> String {
    format!(
        "{}\n{}\n{}",
        publication.except.as_ref().map_or("", SocketId::as_str),
        publication.app.as_str(),
        publication.channel.as_str()
    )
}

fn decode(payload: &[u8]) -> Option<Publication> {
    let text = std::str::from_utf8(payload).ok()?;
    let mut parts = text.splitn(5, '\n');
    let serial = parts.next()?;
    let except = parts.next()?;
    let app = AppId::parse(parts.next()?).ok()?;
    let channel = ChannelName::parse(parts.next()?).ok()?;
    let frame = parts.next()?;
    Some(Publication {
        app,
        channel,
        frame: ByteString::from(frame),
        except: match except {
            "" => None,
            id => Some(SocketId::parse(id).ok()?),
        },
        history: None,
        serial: match serial {
            "" => None,
            serial => Some(serial.parse().ok()?),
        },
    })
}

pub fn integer(value: &Value) -> Option<i64> {
    match value {
        Value::Int(n) => Some(*n),
        Value::BulkString(bytes) => std::str::from_utf8(bytes).ok()?.parse().ok(),
        _ => None,
    }
}

pub fn text(value: &Value) -> Option<String> {
    match value {
        Value::BulkString(bytes) => String::from_utf8(bytes.clone()).ok(),
        Value::SimpleString(text) => Some(text.clone()),
        _ => None,
    }
}

pub fn malformed(what: &str) -> BrokerError {
    BrokerError::Unavailable(format!("unexpected reply from Redis to {what}"))
}

/// `user, info, user, info, ...` as members ordered by user id.
pub fn members(flat: &[Value]) -> Result<Vec<Member>, BrokerError> {
    let mut members = flat
        .chunks_exact(2)
        .map(|pair| {
            let user = UserId::parse(&text(&pair[0])?).ok()?;
            let info = serde_json::from_str(&text(&pair[1])?).ok()?;
            Some(Member {
                user_id: user,
                user_info: info,
            })
        })
        .collect::<Option<Vec<_>>>()
        .ok_or_else(|| malformed("presence"))?;
    members.sort_by(|a, b| a.user_id.cmp(&b.user_id));
    Ok(members)
}

/// `{gap, epoch, latest, oldest available, entries...}`, each entry `at:frame`.
pub fn parse_history(reply: &[Value]) -> Option<History> {
    let gap = integer(reply.first()?)? == 1;
    let epoch = text(reply.get(1)?)?;
    let latest = u64::try_from(integer(reply.get(2)?)?).ok()?;
    let oldest_available = u64::try_from(integer(reply.get(3)?)?).ok()?;
    if gap {
        return Some(History::Gap {
            epoch,
            latest,
            oldest_available,
        });
    }
    let entries = &reply[4..];
    let first = latest + 1 - entries.len() as u64;
    let frames = entries
        .iter()
        .enumerate()
        .map(|(index, entry)| {
            let entry = text(entry)?;
            let (_, frame) = entry.split_once(':')?;
            Some((first + index as u64, ByteString::from(frame)))
        })
        .collect::<Option<Vec<_>>>()?;
    Some(History::Replay {
        epoch,
        latest,
        frames,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_round_trips_and_a_malformed_one_is_refused() {
        let publication = Publication {
            app: AppId::parse("app-1").unwrap(),
            channel: ChannelName::parse("private-a.b").unwrap(),
            frame: "{\"data\":\"two\\nlines\"}\n".into(),
            except: Some(SocketId::parse("12.34").unwrap()),
            history: None,
            serial: None,
        };
        let payload = format!("7\n{}\n{}", encode_head(&publication), publication.frame);
        let decoded = decode(payload.as_bytes()).expect("decodes");
        assert_eq!(decoded.serial, Some(7));
        assert_eq!(decoded.except, publication.except);
        assert_eq!(
            (decoded.app, decoded.channel),
            (publication.app, publication.channel)
        );
        assert_eq!(
            decoded.frame, publication.frame,
            "the frame is last: newlines survive"
        );
        for malformed in [
            "",
            "x\n\na\nc\n{}",
            "1\nnot a socket\na\nc\n{}",
            "1\n\na\n{bad}\n{}",
        ] {
            assert!(decode(malformed.as_bytes()).is_none(), "{malformed:?}");
        }
        assert!(decode(&[0xff, 0xfe]).is_none(), "not UTF-8");
    }
}
