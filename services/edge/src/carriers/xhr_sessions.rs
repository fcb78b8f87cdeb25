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
//! As with our own carriers (`carriers::session`), a new session is on probation: it takes
//! a connection slot only once in use (a second receive request, or a receive request still
//! open when `sb_first_poll_grace` ends), and ends when that grace ends if nobody came back.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Wake, Waker};
use std::time::Duration;

use protocol::codes::CloseReason;
use tenancy::KeyedApp;
use tokio::sync::{Notify, mpsc};
use tokio::time::Instant;
use tracing::Instrument;

use crate::EdgeState;
use crate::connection::{Connection, MessageSource};
use crate::limits::Probation;
use crate::outbox::Outbox;
use crate::websocket::{Inbound, InboundError};

/// Client messages a session queues before an `xhr_send` waits for the connection.
const INBOUND_CAPACITY: usize = 16;

/// The longest `{server}` or `{session}` path segment accepted (pusher-js: 3 and 8 chars).
const MAX_SEGMENT: usize = 64;

/// The longest app key kept in a session id (longer ones are refused as unknown).
const MAX_KEY: usize = 256;

/// Every open xhr session of this edge, by `{key}/{server}/{session}`.
#[derive(Default)]
pub(crate) struct XhrSessions {
    sessions: Mutex<HashMap<SessionId, Arc<XhrSession>>>,
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
        self.lock().get(id).cloned()
    }

    /// Opens a session on an admitted connection (on probation: no slot yet) and starts its
    /// protocol task; if another request opened the same session meanwhile, that one is
    /// returned.
    pub(crate) fn open(
        &self,
        state: &Arc<EdgeState>,
        id: SessionId,
        keyed: KeyedApp,
    ) -> Arc<XhrSession> {
        let mut sessions = self.lock();
        if let Some(existing) = sessions.get(&id) {
            return existing.clone();
        }
        let socket_id = state.socket_ids.next();
        let outbox = Arc::new(Outbox::new(socket_id.clone(), state.outbox_bounds()));
        let (sender, receiver) = mpsc::channel(INBOUND_CAPACITY);
        let session = Arc::new(XhrSession {
            outbox: outbox.clone(),
            inbound: sender,
            opened: AtomicBool::new(false),
            generation: AtomicU64::new(0),
            relay: Arc::new(Relay::default()),
            receivers: Mutex::new(Receivers {
                open: 0,
                last_closed: Instant::now(),
            }),
            probation: Probation::new(
                keyed.app.id.clone(),
                keyed.app.limits.clone(),
                state.limits.clone(),
            ),
            started: Instant::now(),
            first_poll_grace: state.settings.sb_first_poll_grace,
            close_delivered: Notify::new(),
            close_sent: AtomicBool::new(false),
            abandoned: AtomicBool::new(false),
            grace: state.settings.xhr_session_grace,
        });
        sessions.insert(id.clone(), session.clone());
        drop(sessions);
        let span =
            tracing::info_span!("xhr_session", app_id = %keyed.app.id, socket_id = %socket_id);
        let source = XhrSource {
            receiver,
            session: session.clone(),
        };
        actix_web::rt::spawn(
            run(state.clone(), id, keyed, session.clone(), source).instrument(span),
        );
        session
    }

    fn remove(&self, id: &SessionId, session: &Arc<XhrSession>) {
        let mut sessions = self.lock();
        if sessions
            .get(id)
            .is_some_and(|current| Arc::ptr_eq(current, session))
        {
            sessions.remove(id);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<SessionId, Arc<XhrSession>>> {
        self.sessions.lock().expect("xhr sessions lock poisoned")
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
) {
    Connection::run(state.clone(), keyed, None, session.outbox.clone(), source).await;
    // Probation ends too: a late receive request takes no slot for a session that is over.
    session.probation.release();
    if !session.abandoned.load(Ordering::Acquire) {
        let grace = tokio::time::sleep(session.grace);
        tokio::select! {
            () = session.close_delivered.notified() => {}
            () = grace => {}
        }
    }
    state.xhr_sessions.remove(&id, &session);
}

/// One xhr session: the connection's outbox and the way to its task.
pub(crate) struct XhrSession {
    pub(crate) outbox: Arc<Outbox>,
    inbound: mpsc::Sender<Result<Inbound, InboundError>>,
    /// Whether `o` was sent: pusher-js reads a second `o` as "server lost session".
    opened: AtomicBool,
    /// Bumped by every receive request; only the receive request holding the latest value
    /// drains the outbox.
    generation: AtomicU64,
    /// The outbox's writer waker, forwarding to the current receive request.
    relay: Arc<Relay>,
    receivers: Mutex<Receivers>,
    /// Told when a receive request has written the closing frame.
    close_delivered: Notify,
    close_sent: AtomicBool,
    /// Set when the connection ended because no receive request came in time.
    abandoned: AtomicBool,
    grace: Duration,
    /// The app's connection slot, taken once the session is in use (with the plan when the
    /// session started).
    probation: Probation,
    started: Instant,
    first_poll_grace: Duration,
}

struct Receivers {
    open: usize,
    last_closed: Instant,
}

/// What the session's source does when its deadline passes.
enum Deadline {
    Wait,
    /// Nobody came back: the client is gone.
    Abandoned,
    /// Over the quota: the connection ends with the refusal.
    Refused,
}

impl XhrSession {
    /// Registers a new receive request: it supersedes the current one, which ends. Returns its
    /// generation.
    pub(crate) fn begin_receive(&self) -> u64 {
        self.receivers.lock().expect("receivers lock poisoned").open += 1;
        let generation = self.generation.fetch_add(1, Ordering::AcqRel) + 1;
        // Wake the superseded request so it sees it is no longer current.
        self.relay.wake_by_ref();
        // A receive request is the client saying it is alive.
        let _ = self.inbound.try_send(Ok(Inbound::Pong));
        generation
    }

    /// Whether the caller, about to write, must write `o` first: true once per session, for
    /// the first response that actually writes. (Claimed when a request came in, a request
    /// superseded or dropped before writing took the `o` with it, and pusher-js's
    /// `xhr_polling`, which re-polls after any 200, then waited for it forever.)
    pub(crate) fn claim_open(&self) -> bool {
        !self.opened.swap(true, Ordering::AcqRel)
    }

    fn lock_receivers(&self) -> std::sync::MutexGuard<'_, Receivers> {
        self.receivers.lock().expect("receivers lock poisoned")
    }

    /// Ends probation (a second receive request): takes a connection slot. `false` when the
    /// app is at its ceiling; the session then ends with 4004.
    pub(crate) async fn put_in_use(&self) -> bool {
        let in_use = self.probation.put_in_use().await;
        if !in_use {
            // Wakes the source, which then ends the connection.
            let _ = self.inbound.try_send(Ok(Inbound::Pong));
        }
        in_use
    }

    /// Why the session was refused after it started, if it was.
    pub(crate) fn refusal(&self) -> Option<CloseReason> {
        self.probation
            .refused()
            .then_some(CloseReason::OverConnectionQuota)
    }

    pub(crate) fn end_receive(&self) {
        let mut receivers = self.receivers.lock().expect("receivers lock poisoned");
        receivers.open = receivers.open.saturating_sub(1);
        receivers.last_closed = Instant::now();
    }

    pub(crate) fn is_current(&self, generation: u64) -> bool {
        self.generation.load(Ordering::Acquire) == generation
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
        self.close_sent.store(true, Ordering::Release);
        self.close_delivered.notify_one();
    }

    /// Whether a receive request has written the close: nothing more will come, so a later
    /// request on the session (in the moment before it is forgotten) ends at once instead of
    /// waiting for frames.
    pub(crate) fn close_was_sent(&self) -> bool {
        self.close_sent.load(Ordering::Acquire)
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

    /// When the source must look again: the end of probation, or when the client counts as
    /// gone if no receive request opens before then.
    fn next_deadline(&self) -> Instant {
        let receivers = self.lock_receivers();
        let now = Instant::now();
        if self.probation.refused() {
            return now;
        }
        let idle = match receivers.open {
            0 => receivers.last_closed + self.idle_grace(),
            _ => now + self.grace,
        };
        match self.probation.is_over() {
            true => idle,
            false => idle.min(self.started + self.first_poll_grace),
        }
    }

    /// A session on probation is given up sooner.
    fn idle_grace(&self) -> Duration {
        match self.probation.is_over() {
            true => self.grace,
            false => self.first_poll_grace,
        }
    }

    async fn on_deadline(&self) -> Deadline {
        let now = Instant::now();
        if !self.probation.is_over() && self.started + self.first_poll_grace <= now {
            if self.lock_receivers().open == 0 {
                return Deadline::Abandoned;
            }
            // Still receiving (a stream): in use.
            self.probation.put_in_use().await;
        }
        if self.probation.refused() {
            return Deadline::Refused;
        }
        let receivers = self.lock_receivers();
        if receivers.open == 0 && receivers.last_closed + self.idle_grace() <= now {
            return Deadline::Abandoned;
        }
        Deadline::Wait
    }
}

#[cfg(test)]
impl XhrSession {
    /// A session with no connection task behind it, for the receive body's tests.
    pub(crate) fn for_test() -> Arc<Self> {
        let socket_id = protocol::names::SocketId::parse("1.1").unwrap();
        let (inbound, _) = mpsc::channel(INBOUND_CAPACITY);
        Arc::new(Self {
            outbox: Arc::new(Outbox::new(
                socket_id,
                crate::outbox::OutboxBounds::frames_for_test(16),
            )),
            inbound,
            opened: AtomicBool::new(false),
            generation: AtomicU64::new(0),
            relay: Arc::new(Relay::default()),
            receivers: Mutex::new(Receivers {
                open: 0,
                last_closed: Instant::now(),
            }),
            close_delivered: Notify::new(),
            close_sent: AtomicBool::new(false),
            abandoned: AtomicBool::new(false),
            grace: Duration::from_secs(30),
            probation: Probation::new(
                protocol::names::AppId::parse("app").unwrap(),
                tenancy::PlanLimits::pusher_defaults(),
                crate::limits::Limits::local_for_tests(),
            ),
            started: Instant::now(),
            first_poll_grace: Duration::from_secs(10),
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
            let deadline = self.session.next_deadline();
            tokio::select! {
                message = self.receiver.recv() => return message,
                () = tokio::time::sleep_until(deadline) => match self.session.on_deadline().await {
                    Deadline::Wait => {}
                    Deadline::Abandoned => {
                        self.session.abandoned.store(true, Ordering::Release);
                        return None;
                    }
                    Deadline::Refused => return None,
                },
            }
        }
    }
}
