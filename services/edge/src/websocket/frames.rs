//! What both WebSocket paths share about frames: joining fragmented client messages
//! (`Fragments`) and encoding outbox items (`encode`), both over actix-http's stateless
//! `ws::Parser`.

use std::collections::VecDeque;

use actix_http::ws::{CloseCode, OpCode, Parser};
use bytes::BytesMut;
use bytestring::ByteString;

use crate::link::{Inbound, InboundError};
use crate::outbox::Outgoing;

/// Joins fragmented messages; holds nothing between whole messages.
pub(crate) struct Fragments {
    max_message_bytes: usize,
    /// A fragmented message being joined: its opcode and the bytes so far (boxed: rare, and
    /// an idle connection then carries one pointer).
    partial: Option<Box<(OpCode, BytesMut)>>,
}

impl Fragments {
    pub(crate) fn new(max_message_bytes: usize) -> Self {
        Self {
            max_message_bytes,
            partial: None,
        }
    }

    /// Turns one frame into a message, or `None` while a fragmented message is incomplete.
    pub(crate) fn on_frame(
        &mut self,
        finished: bool,
        opcode: OpCode,
        payload: Option<BytesMut>,
    ) -> Option<Result<Inbound, InboundError>> {
        let payload = payload.unwrap_or_default();
        match opcode {
            OpCode::Ping => Some(Ok(Inbound::Ping(payload.freeze()))),
            OpCode::Pong => Some(Ok(Inbound::Activity)),
            OpCode::Close => Some(Ok(Inbound::Close)),
            OpCode::Text | OpCode::Binary if finished => Some(complete(opcode, payload)),
            OpCode::Text | OpCode::Binary => {
                self.partial = Some(Box::new((opcode, payload)));
                None
            }
            OpCode::Continue => {
                let Some(partial) = self.partial.take() else {
                    return Some(Err(InboundError::Protocol(
                        "continuation without a first frame".into(),
                    )));
                };
                let (first, mut joined) = *partial;
                if joined.len() + payload.len() > self.max_message_bytes {
                    return Some(Err(InboundError::TooBig));
                }
                joined.extend_from_slice(&payload);
                if finished {
                    Some(complete(first, joined))
                } else {
                    self.partial = Some(Box::new((first, joined)));
                    None
                }
            }
            OpCode::Bad => Some(Err(InboundError::Protocol("bad opcode".into()))),
        }
    }
}

fn complete(opcode: OpCode, payload: BytesMut) -> Result<Inbound, InboundError> {
    match opcode {
        OpCode::Text => ByteString::try_from(payload.freeze())
            .map(Inbound::Text)
            .map_err(|_| InboundError::Protocol("text message is not UTF-8".into())),
        _ => Ok(Inbound::Binary(payload.freeze())),
    }
}

/// Encodes every taken item into `buffer`, oldest first; true once the close frame is in
/// (nothing after it is written).
pub(crate) fn encode(taken: &mut VecDeque<Outgoing>, buffer: &mut BytesMut) -> bool {
    let size: usize = taken.iter().map(frame_size).sum();
    buffer.reserve(size);
    while let Some(item) = taken.pop_front() {
        match item {
            Outgoing::Text(text) => {
                Parser::write_message(buffer, text.as_bytes(), OpCode::Text, true, false)
            }
            Outgoing::Pong(bytes) => {
                Parser::write_message(buffer, &bytes, OpCode::Pong, true, false)
            }
            Outgoing::Close { code, reason } => {
                let reason = actix_http::ws::CloseReason {
                    code: CloseCode::from(code),
                    description: Some(reason),
                };
                Parser::write_close(buffer, Some(reason), false);
                taken.clear();
                return true;
            }
        }
    }
    false
}

/// Bytes a frame takes on the wire, header included (an upper bound).
fn frame_size(item: &Outgoing) -> usize {
    let payload = match item {
        Outgoing::Text(text) => text.len(),
        Outgoing::Pong(bytes) => bytes.len(),
        Outgoing::Close { reason, .. } => reason.len() + 2,
    };
    payload + 10
}
