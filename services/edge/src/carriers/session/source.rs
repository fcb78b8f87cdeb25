//! The session's `MessageSource`: client frames from `send`, keep-alives while attached,
//! cursor refreshes, the end of probation and expiry.

use std::sync::Arc;

use tokio::sync::mpsc;
use tokio::time::Instant;

use super::{CURSOR_REFRESH_FRAME, CarrierSession, Inner};
use crate::connection::MessageSource;
use crate::outbox::Outgoing;
use crate::websocket::{Inbound, InboundError};

/// The connection's client messages: the POSTs, a keep-alive while a downstream is attached
/// (a carrier's client cannot answer `pusher:ping` by itself), the end of probation, and the
/// end of the session when no downstream has been attached for the grace period.
pub(crate) struct Source {
    pub(super) session: Arc<CarrierSession>,
    pub(super) inbound: mpsc::Receiver<Inbound>,
    pub(super) next_keepalive: Instant,
}

impl Source {
    /// Ends probation once its grace is over: a session still attached is in use (and takes
    /// a slot, or ends with 4004); one nobody came back for ends. `false`: the session ends.
    async fn end_probation(&self) -> bool {
        let session = &self.session;
        {
            let mut inner = session.lock();
            if !inner.attached {
                tracing::debug!("carrier session never polled again");
                inner.stopping = true;
                return false;
            }
        }
        if !session.put_in_use().await {
            session.lock().stopping = true;
            return false;
        }
        true
    }

    /// Keeps an attached client's cursor fresh (it expires `cursor_lifetime` after it was
    /// made): a frame when none was sent for a third of that.
    fn refresh_cursor(&self, inner: &mut Inner) {
        let now = Instant::now();
        if inner.attached && inner.last_cursor_at + self.session.cursor_lifetime / 3 <= now {
            // Counted from now: one refresh frame in flight at a time.
            inner.last_cursor_at = now;
            self.session
                .outbox
                .send(Outgoing::Text(CURSOR_REFRESH_FRAME.into()));
        }
    }
}

impl MessageSource for Source {
    async fn next(&mut self) -> Option<Result<Inbound, InboundError>> {
        loop {
            let session = &self.session;
            let now = Instant::now();
            let probation_ends = session.started + session.first_poll_grace;
            if !session.in_use()
                && probation_ends <= now
                && !session.is_stopping()
                && !self.end_probation().await
            {
                return None;
            }
            let wake_at = {
                let mut inner = session.lock();
                if inner.stopping {
                    return None;
                }
                self.refresh_cursor(&mut inner);
                let mut wake_at = if inner.attached {
                    self.next_keepalive
                        .min(inner.last_cursor_at + session.cursor_lifetime / 3)
                } else {
                    inner.detached_at + session.grace
                };
                if !session.in_use() {
                    wake_at = wake_at.min(probation_ends);
                }
                wake_at
            };
            tokio::select! {
                message = self.inbound.recv() => return message.map(Ok),
                () = session.changed.notified() => {}
                () = tokio::time::sleep_until(wake_at) => {
                    let mut inner = session.lock();
                    let now = Instant::now();
                    if inner.attached && self.next_keepalive <= now {
                        self.next_keepalive = now + session.keepalive;
                        return Some(Ok(Inbound::Pong));
                    }
                    if !inner.attached && inner.detached_at + session.grace <= now {
                        inner.stopping = true;
                        tracing::debug!("carrier session expired");
                        return None;
                    }
                }
            }
        }
    }
}
