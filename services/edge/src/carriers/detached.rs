//! The one machine behind every detached session (a connection that outlives the downstream
//! requests carrying it): our SDK's carriers (`session`, cursor-signed and rebuildable) and
//! pusher-js's xhr transports (`xhr_sessions`, o/a/h/c lines, no resume) both run it, each
//! with its own framing and buffer on top.
//!
//! It decides, from the downstream requests' attach and detach and the clock, when the
//! client counts as gone, when a new session's probation ends (it takes a connection slot
//! only once in use: a second downstream, a send, or a downstream still attached when the
//! first-poll grace ends; one nobody came back for ends then), which downstream is current
//! (a newer one supersedes an older), and whether the close has been delivered. It holds no
//! sockets, no slot and reads no clock: every step takes `now`, so the table tests below
//! drive it. Taking the slot is async (the cluster's connection counter): the machine says
//! when (`Verdict::TakeSlot`), `Core`'s `limits::Probation` takes it once, outside any lock,
//! and the answer settles probation (`settle_probation`).

use std::time::Duration;

use protocol::codes::CloseReason;
use tokio::sync::Notify;
use tokio::time::Instant;

mod common;
mod registry;
#[cfg(test)]
mod tests;

pub(crate) use common::{Core, DetachedSession};
pub(crate) use registry::Registry;

/// How long a session waits for its client.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Timing {
    /// With no downstream attached for this long, the client is gone.
    pub grace: Duration,
    /// A new session not in use by then ends (or, still attached, takes its slot).
    pub first_poll_grace: Duration,
}

/// What the session's message source does next.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Keep serving; look again at this instant (`None`: only when woken).
    Wait(Option<Instant>),
    /// The client is gone (never came back, detached past the grace, or stopped).
    Gone,
    /// Probation ended over the app's connection ceiling: end with the refusal.
    Refused,
    /// Probation ended with a downstream attached: take the slot (`DetachedSession::
    /// put_in_use`), then look again.
    TakeSlot,
}

/// A detached session's lifecycle (the slot itself is `Core`'s).
pub(crate) struct Detached {
    timing: Timing,
    started: Instant,
    /// The current downstream's number; a newer one supersedes it.
    generation: u64,
    /// Whether the current downstream is still open.
    attached: bool,
    detached_at: Instant,
    /// Probation is over (a slot was taken, or refused, or the session ended).
    in_use: bool,
    refusal: Option<CloseReason>,
    /// Asked to end (gone, replaced, refused): the source reports the client gone.
    stopping: bool,
    /// A downstream has been handed the close: nothing more will come.
    close_delivered: bool,
}

impl Detached {
    /// A new session; `in_use` when it holds a slot already (a rebuilt session's client is
    /// back), else on probation.
    pub(crate) fn new(timing: Timing, now: Instant, in_use: bool) -> Self {
        Self {
            timing,
            started: now,
            generation: 0,
            attached: false,
            detached_at: now,
            in_use,
            refusal: None,
            stopping: false,
            close_delivered: false,
        }
    }

    /// A downstream attaches and supersedes the current one: its generation.
    pub(crate) fn attach(&mut self) -> u64 {
        self.generation += 1;
        self.attached = true;
        self.generation
    }

    /// The downstream of `generation` ended; `true` if it was the current one (the session
    /// is now detached).
    pub(crate) fn detach(&mut self, generation: u64, now: Instant) -> bool {
        if self.generation != generation || !self.attached {
            return false;
        }
        self.attached = false;
        self.detached_at = now;
        true
    }

    pub(crate) fn is_current(&self, generation: u64) -> bool {
        self.generation == generation
    }

    pub(crate) fn is_attached(&self) -> bool {
        self.attached
    }

    /// Whether probation is over (a slot was taken or refused, or the session ended).
    pub(crate) fn is_in_use(&self) -> bool {
        self.in_use
    }

    /// Ends probation with the slot-taking's answer (`slot_taken`), unless it is already
    /// over (then the answer changes nothing). `false` when the session must end with the
    /// refusal.
    pub(crate) fn settle_probation(&mut self, slot_taken: bool) -> bool {
        if !self.in_use {
            self.in_use = true;
            if !slot_taken {
                self.refusal = Some(CloseReason::OverConnectionQuota);
            }
        }
        self.refusal.is_none()
    }

    /// Why the session was refused after it started, if it was.
    pub(crate) fn refusal(&self) -> Option<CloseReason> {
        self.refusal
    }

    /// The source's step at `now`: whether the client is still there, and when to look again.
    pub(crate) fn check(&mut self, now: Instant) -> Verdict {
        if self.stopping {
            return Verdict::Gone;
        }
        let probation_ends = self.started + self.timing.first_poll_grace;
        if !self.in_use && probation_ends <= now {
            if !self.attached {
                tracing::debug!("detached session never used");
                self.stopping = true;
                return Verdict::Gone;
            }
            // Still attached (a stream): in use, once it has its slot.
            return Verdict::TakeSlot;
        }
        if self.refusal.is_some() {
            return Verdict::Refused;
        }
        let expires = (!self.attached).then(|| self.detached_at + self.timing.grace);
        if expires.is_some_and(|expires| expires <= now) {
            tracing::debug!("detached session expired");
            self.stopping = true;
            return Verdict::Gone;
        }
        let probation = (!self.in_use).then_some(probation_ends);
        Verdict::Wait(match (expires, probation) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        })
    }

    /// Ends the session: the next `check` says the client is gone.
    pub(crate) fn stop(&mut self) {
        self.stopping = true;
    }

    pub(crate) fn is_stopping(&self) -> bool {
        self.stopping
    }

    /// The connection has ended: ends probation, so that a late downstream takes no slot
    /// for a session that is over (`Core` gives the slot back).
    pub(crate) fn end(&mut self) {
        self.in_use = true;
    }

    pub(crate) fn deliver_close(&mut self) {
        self.close_delivered = true;
    }

    pub(crate) fn close_delivered(&self) -> bool {
        self.close_delivered
    }

    /// After the connection ended: whether the session may be forgotten (its close has been
    /// delivered, or its client is gone and will not take it).
    pub(crate) fn done_lingering(&self) -> bool {
        self.close_delivered || self.stopping
    }

    /// How long a session lingers for a downstream to take its close.
    pub(crate) fn grace(&self) -> Duration {
        self.timing.grace
    }
}

/// After the connection ended: waits until `done` (the close was delivered, or the client
/// is gone), each time `changed` is notified, for at most `grace`; the session is then
/// forgotten.
pub(crate) async fn linger(grace: Duration, changed: &Notify, done: impl Fn() -> bool) {
    let deadline = Instant::now() + grace;
    while !done() {
        tokio::select! {
            () = changed.notified() => {}
            () = tokio::time::sleep_until(deadline) => return,
        }
    }
}

/// Sleeps until `at`, or forever (until the caller's other branches fire) for `None`.
pub(crate) async fn sleep_until_or_forever(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
