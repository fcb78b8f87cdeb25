//! The session's `MessageSource`: client frames from `send`, keep-alives while attached,
//! cursor refreshes, and the detached-session machine's verdict (probation, expiry).

use std::sync::Arc;

use tokio::time::Instant;

use super::{CURSOR_REFRESH_FRAME, CarrierSession, Inner};
use crate::carriers::detached::{DetachedSession, Verdict, sleep_until_or_forever};
use crate::link::{Inbound, InboundError, MessageSource};
use crate::outbox::Outgoing;

/// The connection's client messages: the POSTs, a keep-alive while a downstream is attached
/// (a carrier's client cannot answer `pusher:ping` by itself), the end of probation, and the
/// end of the session when no downstream has been attached for the grace period.
pub(crate) struct Source {
    pub(super) session: Arc<CarrierSession>,
    pub(super) inbound: super::InboundReceiver,
    pub(super) next_keepalive: Instant,
}

impl Source {
    /// Keeps an attached client's cursor fresh (it expires `cursor_lifetime` after it was
    /// made): a frame when none was sent for a third of that.
    fn refresh_cursor(&self, inner: &mut Inner, now: Instant) {
        let refresh_at = inner.last_cursor_at + self.session.cursor_lifetime / 3;
        if inner.machine.is_attached() && refresh_at <= now {
            // Counted from now: one refresh frame in flight at a time. It gets a new full
            // cursor (a delta would carry the old one's expiry).
            inner.last_cursor_at = now;
            inner.base = None;
            self.session
                .core
                .outbox
                .send(Outgoing::Text(CURSOR_REFRESH_FRAME.into()));
        }
    }

    /// When to look again (`Verdict::Wait`), `Verdict::TakeSlot` when probation ends with a
    /// downstream attached, or `Verdict::Gone` when the session ends (the client is gone, or
    /// probation ended over the app's ceiling).
    fn step(&self, now: Instant) -> Verdict {
        let session = &self.session;
        let mut inner = session.lock();
        let wake_at = match inner.machine.check(now) {
            Verdict::Wait(wake_at) => wake_at,
            Verdict::Gone => return Verdict::Gone,
            Verdict::TakeSlot => return Verdict::TakeSlot,
            Verdict::Refused => {
                // Stopped: the close (the refusal) is not waited for, as before probation.
                inner.machine.stop();
                return Verdict::Gone;
            }
        };
        self.refresh_cursor(&mut inner, now);
        if !inner.machine.is_attached() {
            return Verdict::Wait(wake_at);
        }
        let attached = self
            .next_keepalive
            .min(inner.last_cursor_at + session.cursor_lifetime / 3);
        Verdict::Wait(Some(wake_at.map_or(attached, |at| at.min(attached))))
    }
}

impl MessageSource for Source {
    async fn next(&mut self) -> Option<Result<Inbound, InboundError>> {
        loop {
            let wake_at = match self.step(Instant::now()) {
                Verdict::Wait(wake_at) => wake_at,
                Verdict::TakeSlot => {
                    // Refused: the next step ends the session.
                    self.session.put_in_use().await;
                    continue;
                }
                Verdict::Gone | Verdict::Refused => return None,
            };
            let session = self.session.clone();
            tokio::select! {
                message = self.inbound.recv() => return message.map(Ok),
                () = session.core().changed.notified() => {}
                () = sleep_until_or_forever(wake_at) => {
                    let now = Instant::now();
                    if session.lock().machine.is_attached() && self.next_keepalive <= now {
                        self.next_keepalive = now + session.keepalive;
                        return Some(Ok(Inbound::Activity));
                    }
                }
            }
        }
    }
}
