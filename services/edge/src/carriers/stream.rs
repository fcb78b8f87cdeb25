//! The response body of the streaming carriers (SSE, HTTP streaming, the forever frame): a
//! prelude, then each frame as the carrier writes it, a heartbeat when nothing was written
//! for a while, and the end when the session ends or a newer request takes it over.
//!
//! HTTP streaming writes one NDJSON line per frame: `{"cursor":"…","frame":{…}}`.
//!
//! Each frame's cursor is written whole (a full cursor and its delta), or, for a client that
//! asked for short ids (`ids=delta`: it keeps the last full cursor and appends what follows
//! it), only the delta when the response already carried its full cursor.

use std::borrow::Cow;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use bytestring::ByteString;
use futures_util::Stream;

use super::session::{Attachment, Delivery, Sent};

/// How a streaming carrier writes.
pub(crate) trait Format: Unpin {
    /// The answer's `Content-Type`.
    fn content_type(&self) -> &'static str;
    fn prelude(&self, out: &mut BytesMut);
    fn frame(&self, cursor: &str, frame: &str, out: &mut BytesMut);
    fn heartbeat(&self, out: &mut BytesMut);
}

pub(crate) struct Ndjson;

impl Format for Ndjson {
    fn content_type(&self) -> &'static str {
        "application/x-ndjson"
    }

    fn prelude(&self, _: &mut BytesMut) {}

    fn frame(&self, cursor: &str, frame: &str, out: &mut BytesMut) {
        out.extend_from_slice(b"{\"cursor\":");
        out.extend_from_slice(quoted(cursor).as_bytes());
        out.extend_from_slice(b",\"frame\":");
        out.extend_from_slice(frame.as_bytes());
        out.extend_from_slice(b"}\n");
    }

    fn heartbeat(&self, out: &mut BytesMut) {
        out.extend_from_slice(b"\n");
    }
}

/// A string as a JSON string literal.
pub(crate) fn quoted(text: &str) -> String {
    serde_json::to_string(text).expect("strings serialise")
}

/// Where a streaming response's frames come from.
pub(crate) enum Feed {
    Session(Attachment),
    /// A refusal: these frames, then the end.
    Fixed(Vec<ByteString>),
}

pub(crate) struct StreamingBody<F: Format> {
    format: F,
    feed: Feed,
    prelude_sent: bool,
    /// Written when nothing was for this long (`EdgeSettings::sb_heartbeat_interval`):
    /// proxies close idle responses, and a client that went away is noticed on a write.
    every: Duration,
    heartbeat: Pin<Box<tokio::time::Sleep>>,
    taken: Vec<Sent>,
    finished: bool,
    /// The client appends deltas to the last full cursor itself (`ids=delta`).
    short_ids: bool,
    /// The full cursor this response carried last.
    written_base: Option<Arc<str>>,
}

impl<F: Format> StreamingBody<F> {
    pub(crate) fn new(format: F, feed: Feed, every: Duration, short_ids: bool) -> Self {
        Self {
            format,
            feed,
            prelude_sent: false,
            every,
            heartbeat: Box::pin(tokio::time::sleep(every)),
            taken: Vec::new(),
            finished: false,
            short_ids,
            written_base: None,
        }
    }

    /// The cursor text to write after `sent`.
    fn cursor_of<'a>(&mut self, sent: &'a Sent) -> Cow<'a, str> {
        let known = self
            .written_base
            .as_ref()
            .is_some_and(|base| Arc::ptr_eq(base, &sent.base));
        if self.short_ids && known && sent.delta.is_some() {
            return Cow::Borrowed(sent.delta());
        }
        self.written_base = Some(sent.base.clone());
        Cow::Owned(sent.cursor())
    }
}

impl<F: Format> Stream for StreamingBody<F> {
    type Item = Result<Bytes, actix_web::Error>;

    fn poll_next(self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if this.finished {
            return Poll::Ready(None);
        }
        let mut out = BytesMut::new();
        if !this.prelude_sent {
            this.prelude_sent = true;
            this.format.prelude(&mut out);
        }
        match &mut this.feed {
            Feed::Fixed(frames) => {
                for frame in frames.drain(..) {
                    this.format.frame("", &frame, &mut out);
                }
                this.finished = true;
            }
            Feed::Session(attachment) => match attachment.poll_frames(context, &mut this.taken) {
                Poll::Ready(Delivery::Frames) => {
                    let taken = std::mem::take(&mut this.taken);
                    for sent in &taken {
                        let cursor = this.cursor_of(sent);
                        this.format.frame(&cursor, &sent.frame, &mut out);
                    }
                    this.taken = taken;
                    this.taken.clear();
                }
                Poll::Ready(Delivery::Finished) => this.finished = true,
                Poll::Pending => {}
            },
        }
        if out.is_empty() && !this.finished {
            if this.heartbeat.as_mut().poll(context).is_pending() {
                return Poll::Pending;
            }
            this.format.heartbeat(&mut out);
        }
        let next = tokio::time::Instant::now() + this.every;
        this.heartbeat.as_mut().reset(next);
        if out.is_empty() {
            return Poll::Ready(None);
        }
        Poll::Ready(Some(Ok(out.freeze())))
    }
}
