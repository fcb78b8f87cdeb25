//! The response body of the streaming carriers (SSE, HTTP streaming, the forever frame): a
//! prelude, then each frame as the carrier writes it, a heartbeat when nothing was written
//! for a while, and the end when the session ends or a newer request takes it over.
//!
//! HTTP streaming writes one NDJSON line per frame: `{"cursor":"…","frame":{…}}`.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use bytestring::ByteString;
use futures_util::Stream;

use super::session::{Attachment, Delivery, Sent};

/// How a streaming carrier writes.
pub(crate) trait Format: Unpin {
    fn prelude(&self, out: &mut BytesMut);
    fn frame(&self, cursor: &str, frame: &str, out: &mut BytesMut);
    fn heartbeat(&self, out: &mut BytesMut);
}

pub(crate) struct Ndjson;

impl Format for Ndjson {
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
}

impl<F: Format> StreamingBody<F> {
    pub(crate) fn new(format: F, feed: Feed, every: Duration) -> Self {
        Self {
            format,
            feed,
            prelude_sent: false,
            every,
            heartbeat: Box::pin(tokio::time::sleep(every)),
            taken: Vec::new(),
            finished: false,
        }
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
                    for sent in this.taken.drain(..) {
                        this.format.frame(&sent.cursor, &sent.frame, &mut out);
                    }
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
