//! The sessions of pusher-js's `xhr_streaming` and `xhr_polling` transports: one protocol
//! connection (`Connection::run`) per `{key}/{server}/{session}`, outliving the HTTP requests
//! that carry it.
//!
//! A session's outbox is drained by whichever receive request is current: a newer receive
//! request supersedes an older one (pusher-js opens a fresh stream after 256 KB, and re-polls
//! after every answer). Client frames come from `xhr_send` POSTs through a small channel, the
//! connection's `MessageSource`. With no receive request open for `xhr_session_grace`, the
//! client is taken as gone and the connection ends as if it had closed.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Wake, Waker};
use std::time::Duration;

use tenancy::KeyedApp;
use tokio::sync::{Notify, mpsc};
use tokio::time::Instant;
use tracing::Instrument;

use crate::EdgeState;
use crate::connection::{Connection, MessageSource};
use crate::limits::ConnectionSlot;
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

    /// Opens a session on an admitted connection and starts its protocol task; if another
    /// request opened the same session meanwhile, that one is returned and this admission is
    /// given back.
    pub(crate) fn open(
        &self,
        state: &Arc<EdgeState>,
        id: SessionId,
        keyed: KeyedApp,
        slot: ConnectionSlot,
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
            close_delivered: Notify::new(),
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
            run(state.clone(), id, keyed, slot, session.clone(), source).instrument(span),
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
    slot: ConnectionSlot,
    session: Arc<XhrSession>,
    source: XhrSource,
) {
    Connection::run(state.clone(), keyed, slot, session.outbox.clone(), source).await;
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
    /// Set when the connection ended because no receive request came in time.
    abandoned: AtomicBool,
    grace: Duration,
}

struct Receivers {
    open: usize,
    last_closed: Instant,
}

impl XhrSession {
    /// Registers a new receive request: it supersedes the current one, which ends. Returns its
    /// generation, and whether it must send `o` (the session's first receive request).
    pub(crate) fn begin_receive(&self) -> (u64, bool) {
        self.receivers.lock().expect("receivers lock poisoned").open += 1;
        let generation = self.generation.fetch_add(1, Ordering::AcqRel) + 1;
        // Wake the superseded request so it sees it is no longer current.
        self.relay.wake_by_ref();
        // A receive request is the client saying it is alive.
        let _ = self.inbound.try_send(Ok(Inbound::Pong));
        let first = !self.opened.swap(true, Ordering::AcqRel);
        (generation, first)
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
        self.close_delivered.notify_one();
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

    /// When the client counts as gone if no receive request opens before then.
    fn idle_deadline(&self) -> Instant {
        let receivers = self.receivers.lock().expect("receivers lock poisoned");
        if receivers.open > 0 {
            Instant::now() + self.grace
        } else {
            receivers.last_closed + self.grace
        }
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
            let deadline = self.session.idle_deadline();
            tokio::select! {
                message = self.receiver.recv() => return message,
                () = tokio::time::sleep_until(deadline) => {
                    if self.session.idle_deadline() <= Instant::now() {
                        self.session.abandoned.store(true, Ordering::Release);
                        return None;
                    }
                }
            }
        }
    }
}
