//! What Redis answers, turned into the broker's types: pub/sub messages into deliveries,
//! script replies into histories and members. Anything unexpected is an error, never a panic.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytestring::ByteString;
use protocol::names::{AppId, ChannelName, SocketId, UserId};
use protocol::wire::Member;
use redis::{PushInfo, PushKind, Value};

use super::connection::message_payload;

use crate::trace_context::TraceParent;
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
        let Some((publication, trace)) = decode(payload) else {
            tracing::warn!("a malformed message on a broker channel was dropped");
            return;
        };
        // One span per publication this node receives, however many subscribers it has here
        // (the hub records their number); a child of the publish on the publishing node.
        let span = tracing::debug_span!(
            "broker.deliver",
            otel.kind = "consumer",
            app_id = %publication.app,
            serial = publication.serial,
            subscribers = tracing::field::Empty,
        );
        if let Some(trace) = &trace {
            trace.adopt(&span);
        }
        span.in_scope(|| self.sink.deliver(&publication));
    }
}

/// The most header lines a message may start with (see `trace_header`).
const MAX_HEADERS: usize = 8;

/// The header lines a message starts with: `traceparent=<W3C traceparent>\n` when the
/// publication has a trace context to carry, else nothing, so messages of nodes with traces
/// off are byte for byte what older nodes send. A header line holds a `=`, which a serial
/// never does; nodes of this version skip header names they don't know. An older node drops
/// a message with a header as malformed (a warning, no crash): turn traces on once every node
/// runs a version that reads them.
pub fn trace_header(trace: Option<&TraceParent>) -> String {
    trace.map_or_else(String::new, |trace| {
        format!("traceparent={}\n", trace.as_str())
    })
}

/// Splits off the header lines; an invalid `traceparent` is ignored, not the message.
fn headers(mut text: &str) -> Option<(Option<TraceParent>, &str)> {
    let mut trace = None;
    for _ in 0..=MAX_HEADERS {
        let (line, rest) = text.split_once('\n')?;
        let Some((name, value)) = line.split_once('=') else {
            return Some((trace, text));
        };
        if name == "traceparent" {
            trace = TraceParent::parse(value);
        }
        text = rest;
    }
    None
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

fn decode(payload: &[u8]) -> Option<(Publication, Option<TraceParent>)> {
    let text = std::str::from_utf8(payload).ok()?;
    let (trace, text) = headers(text)?;
    let mut parts = text.splitn(5, '\n');
    let serial = parts.next()?;
    let except = parts.next()?;
    let app = AppId::parse(parts.next()?).ok()?;
    let channel = ChannelName::parse(parts.next()?).ok()?;
    let frame = parts.next()?;
    let publication = Publication {
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
    };
    Some((publication, trace))
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
        let (decoded, trace) = decode(payload.as_bytes()).expect("decodes");
        assert_eq!(trace, None);
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

    #[test]
    fn a_trace_context_travels_in_a_header_line_that_older_nodes_refuse() {
        let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let trace = TraceParent::parse(traceparent).unwrap();
        let message = "3\n\napp-1\nchan\n{\"data\":\"a=b\"}";
        assert_eq!(trace_header(None), "", "traces off: the old format");
        let traced = format!("{}{message}", trace_header(Some(&trace)));
        let (publication, carried) = decode(traced.as_bytes()).expect("decodes");
        assert_eq!(carried.as_ref(), Some(&trace));
        assert_eq!(
            (publication.serial, &*publication.frame),
            (Some(3), "{\"data\":\"a=b\"}")
        );
        // An unknown header is skipped and a broken traceparent ignored, not the message.
        let unknown = format!("tracestate=x\ntraceparent=junk\n{message}");
        let (publication, carried) = decode(unknown.as_bytes()).expect("decodes");
        assert_eq!((publication.serial, carried), (Some(3), None));
        // Without a protocol frame's serial too.
        let unserialed = format!("{}\n\napp-1\nchan\n{{}}", trace_header(Some(&trace)));
        let (publication, carried) = decode(unserialed.as_bytes()).expect("decodes");
        assert_eq!((publication.serial, carried), (None, Some(trace)));
        // Headers are bounded.
        let endless = format!("{}{message}", "a=b\n".repeat(MAX_HEADERS + 1));
        assert!(decode(endless.as_bytes()).is_none());
        // What an older node's decoder makes of it: the serial line is not a number, so the
        // message is dropped as malformed, never misread.
        let first_line = traced.split('\n').next().unwrap();
        assert!(first_line.parse::<u64>().is_err());
    }
}
