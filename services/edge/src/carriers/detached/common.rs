//! What a session of either framing is made of besides its framing's own parts: its
//! connection's outbox, the wake-up for its message source and its linger, its connection
//! slot (`limits::Probation`: taken once, async, from the cluster's counter; a slot that
//! arrives after the session ended goes straight back) (`Core`), and the steps both framings
//! take on the machine through a small trait (`DetachedSession`), so neither copies them.

use std::sync::Arc;

use protocol::codes::CloseReason;
use protocol::names::AppId;
use tenancy::PlanLimits;
use tokio::sync::Notify;

use super::{Detached, linger};
use crate::limits::{ConnectionSlot, Limits, Probation};
use crate::outbox::Outbox;

pub(crate) struct Core {
    pub outbox: Arc<Outbox>,
    /// Wakes the message source and the lingering task: a downstream attached or detached,
    /// probation refused, the close delivered, the session stopped.
    pub changed: Notify,
    /// The plan when the session started: its channels per connection bound what the
    /// session remembers (and its connection ceiling applies when the slot is taken).
    pub limits: PlanLimits,
    /// The app's connection slot, taken once the session is in use.
    probation: Probation,
}

impl Core {
    /// A session's core; with a `slot` already (a rebuilt session) it holds it from the start.
    pub(crate) fn new(
        outbox: Arc<Outbox>,
        app_id: AppId,
        limits: PlanLimits,
        slots: Arc<Limits>,
        slot: Option<ConnectionSlot>,
    ) -> Self {
        let plan = limits.clone();
        let probation = match slot {
            Some(slot) => Probation::in_use(app_id, plan, slots, slot),
            None => Probation::new(app_id, plan, slots),
        };
        Self {
            outbox,
            changed: Notify::new(),
            limits,
            probation,
        }
    }
}

/// A detached session of some framing: its core, and its machine under its own lock (our
/// carriers keep the machine under the lock of their frame buffer).
pub(crate) trait DetachedSession {
    fn core(&self) -> &Core;

    fn with_machine<R>(&self, step: impl FnOnce(&mut Detached) -> R) -> R;

    /// Ends probation: takes one of the app's connection slots (once; concurrent callers
    /// wait for the one answer). `false` when the app is at its ceiling or the count cannot
    /// answer; the session then ends with 4004 (its source is woken to end it). Cancel-safe:
    /// a cancelled take leaves probation on, for the next caller.
    async fn put_in_use(&self) -> bool {
        let core = self.core();
        if self.with_machine(|machine| machine.is_in_use()) {
            return self.with_machine(|machine| machine.refusal().is_none());
        }
        let taken = core.probation.put_in_use().await;
        let in_use = self.with_machine(|machine| machine.settle_probation(taken));
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
        self.with_machine(|machine| machine.end());
        self.core().probation.release();
        let grace = self.with_machine(|machine| machine.grace());
        let done = || self.with_machine(|machine| machine.done_lingering());
        linger(grace, &self.core().changed, done).await;
    }
}
