//! Server-Sent Events: `id: <cursor>` and `data: <frame>` per frame, so EventSource's own
//! reconnect sends the last cursor back as `Last-Event-ID`; a comment as the heartbeat.

use bytes::BytesMut;

use super::stream::Format;

pub(crate) struct Sse;

impl Format for Sse {
    fn content_type(&self) -> &'static str {
        "text/event-stream"
    }

    fn prelude(&self, out: &mut BytesMut) {
        // A first write at once, so the client (and any proxy) sees the stream open.
        out.extend_from_slice(b"retry: 2000\n: open\n\n");
    }

    fn frame(&self, cursor: &str, frame: &str, out: &mut BytesMut) {
        // Frames are compact JSON: no line breaks to split across `data:` lines.
        if !cursor.is_empty() {
            out.extend_from_slice(b"id: ");
            out.extend_from_slice(cursor.as_bytes());
            out.extend_from_slice(b"\n");
        }
        out.extend_from_slice(b"data: ");
        out.extend_from_slice(frame.as_bytes());
        out.extend_from_slice(b"\n\n");
    }

    fn heartbeat(&self, out: &mut BytesMut) {
        out.extend_from_slice(b": heartbeat\n\n");
    }
}
