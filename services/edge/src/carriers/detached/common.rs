//! What a session of either framing is made of besides its framing's own parts: its
//! connection's outbox, the wake-up for its message source and its linger, what probation
//! needs to take a slot (`Core`), and the steps both framings take on the machine through a
//! small trait (`DetachedSession`), so neither copies them.

use std::sync::Arc;

use protocol::codes::CloseReason;
use protocol::names::AppId;
use tenancy::PlanLimits;
use tokio::sync::Notify;

use super::{Detached, linger};
use crate::limits::{ConnectionSlot, Limits};
use crate::outbox::Outbox;

pub(crate) struct Core {
    pub outbox: Arc<Outbox>,
    /// Wakes the message source and the lingering task: a downstream attached or detached,
    /// probation refused, the close delivered, the session stopped.
    pub changed: Notify,
    app_id: AppId,
    /// The plan when the session started: its connection ceiling applies when the slot is
    /// taken, and its channels per connection bound what the session remembers.
    pub limits: PlanLimits,
    slots: Arc<Limits>,
}

impl Core {
    pub(crate) fn new(
        outbox: Arc<Outbox>,
        app_id: AppId,
        limits: PlanLimits,
        slots: Arc<Limits>,
    ) -> Self {
        Self {
            outbox,
            changed: Notify::new(),
            app_id,
            limits,
            slots,
        }
    }

    /// One of the app's connection slots, if it has one left.
    pub(crate) fn admit(&self) -> Option<ConnectionSlot> {
        self.slots.admit_connection(&self.app_id, &self.limits)
    }
}

/// A detached session of some framing: its core, and its machine under its own lock (our
/// carriers keep the machine under the lock of their frame buffer).
pub(crate) trait DetachedSession {
    fn core(&self) -> &Core;

    fn with_machine<R>(&self, step: impl FnOnce(&mut Detached<ConnectionSlot>) -> R) -> R;

    /// Ends probation: takes one of the app's connection slots. `false` when the app is at
    /// its ceiling; the session then ends with 4004 (its source is woken to end it).
    fn put_in_use(&self) -> bool {
        let core = self.core();
        let in_use = self.with_machine(|machine| machine.put_in_use(|| core.admit()));
        if !in_use {
            core.changed.notify_one();
        }
        in_use
    }

    /// Why the session was refused after it started, if it was.
    fn refusal(&self) -> Option<CloseReason> {
        self.with_machine(|machine| machine.refusal())
    }

    /// Once the connection has ended: gives the slot back (ending probation, so that a late
    /// request takes none), then lingers until a downstream has taken the close (the client
    /// learns why it was closed), the client is gone, or the grace ends.
    async fn after_connection(&self) {
        let slot = self.with_machine(|machine| machine.end());
        drop(slot);
        let grace = self.with_machine(|machine| machine.grace());
        let done = || self.with_machine(|machine| machine.done_lingering());
        linger(grace, &self.core().changed, done).await;
    }
}
