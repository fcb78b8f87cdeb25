//! The sessions of pusher-js's `xhr_streaming` and `xhr_polling` transports: one protocol
//! connection (`Connection::run`) per `{key}/{server}/{session}`, outliving the HTTP requests
//! that carry it.
//!
//! A session's outbox is drained by whichever receive request is current: a newer receive
//! request supersedes an older one (pusher-js opens a fresh stream after 256 KB, and re-polls
//! after every answer). Client frames come from `xhr_send` POSTs through a small channel, the
//! connection's `MessageSource`. With no receive request open for `xhr_session_grace`, the
//! client is taken as gone and the connection ends as if it had closed.
//!
//! Attachment, grace, probation (a slot only once in use: a second receive request, or one
//! still open when `sb_first_poll_grace` ends) and close delivery are the machine every
//! detached session runs (`carriers::detached`), shared with our own carriers; this file is
//! the xhr framing's part: the registry by pusher-js's session path, the `o` claimed once,
//! and the relay that wakes the current receive request.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Wake, Waker};

use tenancy::KeyedApp;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::Instrument;

use super::detached::{
    self, Core, Detached, DetachedSession, Timing, Verdict, sleep_until_or_forever,
};
use crate::EdgeState;
use crate::connection::Connection;
use crate::console::report::ClientOrigin;
use crate::link::{Inbound, InboundError, MessageSource};
use crate::outbox::Outbox;

/// Client messages a session queues before an `xhr_send` waits for the connection.
const INBOUND_CAPACITY: usize = 16;

/// The longest `{server}` or `{session}` path segment accepted (pusher-js: 3 and 8 chars).
const MAX_SEGMENT: usize = 64;

/// The longest app key kept in a session id (longer ones are refused as unknown).
const MAX_KEY: usize = 256;

/// Every open xhr session of this edge, by `{key}/{server}/{session}`.
#[derive(Default)]
pub(crate) struct XhrSessions {
    sessions: detached::Registry<SessionId, XhrSession>,
}

/// `{key}/{server}/{session}`: the key is part of it, so two apps never share a session.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct SessionId(String);

impl SessionId {
    /// `None` for `{server}` or `{session}` segments pusher-js would never send (empty, too
    /// long, or other than letters, digits, `_` and `-`). The key is checked by admission.
    pub(crate) fn new(key: &str, server: &str, session: &str) -> Option<Self> {
        let fits = |segment: &str| {
            !segment.is_empty()
                && segment.len() <= MAX_SEGMENT
                && segment
                    .bytes()
                    .all(|byte| byte.is_ascii_alphanumeric() || byte == b'_' || byte == b'-')
        };
        let key_fits = !key.is_empty() && key.len() <= MAX_KEY;
        (key_fits && fits(server) && fits(session))
            .then(|| Self(format!("{key}/{server}/{session}")))
    }
}

impl XhrSessions {
    pub(crate) fn get(&self, id: &SessionId) -> Option<Arc<XhrSession>> {
        self.sessions.get(id)
    }

    /// Opens a session on an admitted connection (on probation: no slot yet) and starts its
    /// protocol task; if another request opened the same session meanwhile, that one is
    /// returned.
    pub(crate) fn open(
        &self,
        state: &Arc<EdgeState>,
        id: SessionId,
        keyed: KeyedApp,
        peer: Option<std::net::IpAddr>,
    ) -> Arc<XhrSession> {
        let mut receiver = None;
        let (session, made) = self.sessions.get_or_insert_with(id.clone(), || {
            let socket_id = state.socket_ids.next();
            let (sender, inbound) = mpsc::channel(INBOUND_CAPACITY);
            receiver = Some(inbound);
            let timing = Timing {
                grace: state.settings.xhr_session_grace,
                first_poll_grace: state.settings.sb_first_poll_grace,
            };
            Arc::new(XhrSession {
                core: Core::new(
                    Arc::new(Outbox::new(socket_id, state.outbox_bounds())),
                    keyed.app.id.clone(),
                    keyed.app.limits.clone(),
                    state.limits.clone(),
                    None,
                ),
                inbound: sender,
                opened: AtomicBool::new(false),
                relay: Arc::new(Relay::default()),
                machine: Mutex::new(Detached::new(timing, Instant::now(), false)),
            })
        });
        let (true, Some(receiver)) = (made, receiver) else {
            return session;
        };
        let socket_id = session.core.outbox.socket_id().clone();
        let span =
            tracing::info_span!("xhr_session", app_id = %keyed.app.id, socket_id = %socket_id);
        let source = XhrSource {
            receiver,
            session: session.clone(),
        };
        let origin = ClientOrigin {
            transport: "xhr",
            address: peer,
        };
        actix_web::rt::spawn(
            run(state.clone(), id, keyed, session.clone(), source, origin).instrument(span),
        );
        session
    }
}

/// The session's protocol task: the connection, then (unless the client is gone) a wait for
/// a receive request to take the closing frames, then the session is forgotten.
async fn run(
    state: Arc<EdgeState>,
    id: SessionId,
    keyed: KeyedApp,
    session: Arc<XhrSession>,
    source: XhrSource,
    origin: ClientOrigin,
) {
    Connection::run(
        state.clone(),
        keyed,
        None,
        session.core.outbox.clone(),
        origin,
        source,
    )
    .await;
    session.after_connection().await;
    state.xhr_sessions.sessions.remove(&id, &session);
}

/// One xhr session: the connection's outbox and the way to its task.
pub(crate) struct XhrSession {
    /// The connection's outbox, the wake-up for the source, the plan for probation.
    pub(crate) core: Core,
    inbound: mpsc::Sender<Result<Inbound, InboundError>>,
    /// Whether `o` was sent: pusher-js reads a second `o` as "server lost session".
    opened: AtomicBool,
    /// The outbox's writer waker, forwarding to the current receive request.
    relay: Arc<Relay>,
    /// Which receive request is current, grace, probation, close delivery.
    machine: Mutex<Detached>,
}

impl DetachedSession for XhrSession {
    fn core(&self) -> &Core {
        &self.core
    }

    fn with_machine<R>(&self, step: impl FnOnce(&mut Detached) -> R) -> R {
        step(&mut self.lock_machine())
    }
}

impl XhrSession {
    fn lock_machine(&self) -> std::sync::MutexGuard<'_, Detached> {
        self.machine.lock().expect("xhr session lock poisoned")
    }

    /// Registers a new receive request: it supersedes the current one, which ends. Returns its
    /// generation.
    pub(crate) fn begin_receive(&self) -> u64 {
        let generation = self.lock_machine().attach();
        // Wake the superseded request so it sees it is no longer current.
        self.relay.wake_by_ref();
        // A receive request is the client saying it is alive.
        let _ = self.inbound.try_send(Ok(Inbound::Activity));
        generation
    }

    /// The receive request of `generation` ended; if it was the current one, the session's
    /// grace starts.
    pub(crate) fn end_receive(&self, generation: u64) {
        if self.lock_machine().detach(generation, Instant::now()) {
            self.core.changed.notify_one();
        }
    }

    /// Whether the caller, about to write, must write `o` first: true once per session, for
    /// the first response that actually writes. (Claimed when a request came in, a request
    /// superseded or dropped before writing took the `o` with it, and pusher-js's
    /// `xhr_polling`, which re-polls after any 200, then waited for it forever.)
    pub(crate) fn claim_open(&self) -> bool {
        !self.opened.swap(true, Ordering::AcqRel)
    }

    pub(crate) fn is_current(&self, generation: u64) -> bool {
        self.lock_machine().is_current(generation)
    }

    /// Registers the receive request of `generation` to be woken when the outbox has frames.
    /// An older request never displaces a newer one.
    pub(crate) fn register(&self, generation: u64, waker: &Waker) {
        self.relay.register(generation, waker);
    }

    /// The waker to hand the outbox: it wakes whichever receive request is registered.
    pub(crate) fn relay_waker(&self) -> Waker {
        Waker::from(self.relay.clone())
    }

    pub(crate) fn delivered_close(&self) {
        self.lock_machine().deliver_close();
        self.core.changed.notify_one();
    }

    /// Whether a receive request has written the close: nothing more will come, so a later
    /// request on the session (in the moment before it is forgotten) ends at once instead of
    /// waiting for frames.
    pub(crate) fn close_was_sent(&self) -> bool {
        self.lock_machine().close_delivered()
    }

    /// Hands client messages to the connection in order; `false` once it has ended.
    pub(crate) async fn deliver(&self, messages: Vec<Result<Inbound, InboundError>>) -> bool {
        for message in messages {
            if self.inbound.send(message).await.is_err() {
                return false;
            }
        }
        true
    }
}

#[cfg(test)]
use {protocol::names::AppId, tenancy::PlanLimits};

#[cfg(test)]
impl XhrSession {
    /// A session with no connection task behind it, for the receive body's tests.
    pub(crate) fn for_test() -> Arc<Self> {
        let timing = Timing {
            grace: std::time::Duration::from_secs(30),
            first_poll_grace: std::time::Duration::from_secs(10),
        };
        let (inbound, _) = mpsc::channel(INBOUND_CAPACITY);
        Self::with_inbound(timing, inbound)
    }

    fn with_inbound(
        timing: Timing,
        inbound: mpsc::Sender<Result<Inbound, InboundError>>,
    ) -> Arc<Self> {
        let limits = crate::limits::Limits::local_for_tests();
        Self::with_plan(timing, inbound, PlanLimits::pusher_defaults(), limits)
    }

    fn with_plan(
        timing: Timing,
        inbound: mpsc::Sender<Result<Inbound, InboundError>>,
        plan: PlanLimits,
        slots: Arc<crate::limits::Limits>,
    ) -> Arc<Self> {
        let socket_id = protocol::names::SocketId::parse("1.1").unwrap();
        Arc::new(Self {
            core: Core::new(
                Arc::new(Outbox::new(
                    socket_id,
                    crate::outbox::OutboxBounds::frames_for_test(16),
                )),
                AppId::parse("app").unwrap(),
                plan,
                slots,
                None,
            ),
            inbound,
            opened: AtomicBool::new(false),
            relay: Arc::new(Relay::default()),
            machine: Mutex::new(Detached::new(timing, Instant::now(), false)),
        })
    }
}

/// Forwards the outbox's wake-ups to the current receive request's task.
#[derive(Default)]
struct Relay {
    current: Mutex<Option<(u64, Waker)>>,
}

impl Relay {
    fn register(&self, generation: u64, waker: &Waker) {
        let mut current = self.current.lock().expect("relay lock poisoned");
        match &mut *current {
            Some((registered, existing)) if *registered == generation => {
                existing.clone_from(waker);
            }
            Some((registered, _)) if *registered > generation => {}
            _ => *current = Some((generation, waker.clone())),
        }
    }
}

impl Wake for Relay {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        let current = self.current.lock().expect("relay lock poisoned");
        if let Some((_, waker)) = &*current {
            waker.wake_by_ref();
        }
    }
}

/// The connection's client messages: what `xhr_send` delivered, or the end once no receive
/// request has been open for the grace period.
struct XhrSource {
    receiver: mpsc::Receiver<Result<Inbound, InboundError>>,
    session: Arc<XhrSession>,
}

impl MessageSource for XhrSource {
    async fn next(&mut self) -> Option<Result<Inbound, InboundError>> {
        loop {
            let session = &self.session;
            let verdict = session.lock_machine().check(Instant::now());
            let wake_at = match verdict {
                Verdict::Wait(wake_at) => wake_at,
                Verdict::TakeSlot => {
                    // Refused: the next check ends the connection with the refusal.
                    session.put_in_use().await;
                    continue;
                }
                // Gone: nobody came back; refused: the connection ends with the refusal.
                Verdict::Gone | Verdict::Refused => return None,
            };
            tokio::select! {
                message = self.receiver.recv() => return message,
                () = session.core.changed.notified() => {}
                () = sleep_until_or_forever(wake_at) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::future::Future;
    use std::sync::atomic::AtomicUsize;
    use std::task::{Context, Poll};
    use std::time::Duration;

    use super::*;

    /// Counts its wake-ups.
    #[derive(Default)]
    struct Counter(AtomicUsize);

    impl Wake for Counter {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[tokio::test]
    async fn the_last_receive_ending_wakes_the_source_which_ends_after_the_grace() {
        let timing = Timing {
            grace: Duration::ZERO,
            first_poll_grace: Duration::from_secs(10),
        };
        let (sender, receiver) = mpsc::channel(INBOUND_CAPACITY);
        let session = XhrSession::with_inbound(timing, sender);
        let first = session.begin_receive();
        let second = session.begin_receive();
        assert!(session.put_in_use().await);
        let mut source = XhrSource {
            receiver,
            session: session.clone(),
        };
        // The two receive requests' activity comes first.
        for _ in 0..2 {
            assert!(matches!(source.next().await, Some(Ok(Inbound::Activity))));
        }
        let counter = Arc::new(Counter::default());
        let waker = Waker::from(counter.clone());
        let mut context = Context::from_waker(&waker);
        let mut next = std::pin::pin!(source.next());
        // In use and attached: nothing to wait for but a wake-up.
        assert!(next.as_mut().poll(&mut context).is_pending());
        // The superseded request ending changes nothing.
        session.end_receive(first);
        assert_eq!(counter.0.load(Ordering::SeqCst), 0);
        assert!(next.as_mut().poll(&mut context).is_pending());
        session.end_receive(second);
        assert_eq!(counter.0.load(Ordering::SeqCst), 1);
        assert!(matches!(
            next.as_mut().poll(&mut context),
            Poll::Ready(None)
        ));
    }

    /// Probation ends with a receive still open: the source takes the slot from the
    /// cluster's counter (async, outside the machine's lock), or ends with the refusal.
    #[tokio::test]
    async fn probation_ending_attached_takes_the_slot_or_ends_with_4004() {
        // Probation ends at the first look, with the receive open.
        let timing = Timing {
            grace: Duration::from_secs(30),
            first_poll_grace: Duration::ZERO,
        };
        let plan = PlanLimits {
            max_connections: Some(1),
            burst_multiplier: 1,
            ..PlanLimits::pusher_defaults()
        };
        let limits = crate::limits::Limits::local_for_tests();
        let open = |limits: &Arc<crate::limits::Limits>| {
            let (sender, receiver) = mpsc::channel(INBOUND_CAPACITY);
            let session = XhrSession::with_plan(timing, sender, plan.clone(), limits.clone());
            let receive = session.begin_receive();
            let source = XhrSource {
                receiver,
                session: session.clone(),
            };
            (session, receive, source)
        };
        let (first, _first_receive, mut first_source) = open(&limits);
        assert!(matches!(
            first_source.next().await,
            Some(Ok(Inbound::Activity))
        ));
        // In use, holding the app's one slot: nothing more until a message comes.
        let waker = Waker::from(Arc::new(Counter::default()));
        let mut context = Context::from_waker(&waker);
        assert!(
            std::pin::pin!(first_source.next())
                .poll(&mut context)
                .is_pending()
        );
        assert_eq!(first.refusal(), None);
        let app = AppId::parse("app").unwrap();
        let full = limits.admit_connection(&app, &plan).await.unwrap();
        assert!(full.is_none(), "the session holds the one slot");

        let (second, _second_receive, mut second_source) = open(&limits);
        assert!(
            second_source.next().await.is_none(),
            "refused: the connection ends"
        );
        assert_eq!(
            second.refusal(),
            Some(protocol::codes::CloseReason::OverConnectionQuota)
        );
    }
}
