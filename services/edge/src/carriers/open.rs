//! Serving a downstream request of our HTTP carriers: attach it to the session it names,
//! rebuild that session, or start a new one (ARCHITECTURE.md, "Carriers").
//!
//! The registry is a cache: any edge may rebuild a session it does not hold, but only for a
//! request whose cursor proves it: signed for the app key, naming that socket id, unexpired.
//! A request that names a session without such a cursor gets a new session with a new
//! (random) socket id, so an id alone, seen or guessed, is worth nothing.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use bytestring::ByteString;
use protocol::carrier_cursor::{self, Cursor};
use protocol::carrier_subs::Sub;
use protocol::codes::CloseReason;
use protocol::names::SocketId;
use tracing::Instrument;

use super::detached::{self, DetachedSession};
use super::session::{Attachment, CarrierSession, Spec, closing_events};
use crate::EdgeState;
use crate::connection::Connection;
use crate::console::report::ClientOrigin;
use crate::limits::unix_now;
use crate::link::admit;
use crate::outbox::Outbox;

/// Client frames a session queues before a `send` waits for the connection.
const INBOUND_CAPACITY: usize = 64;

/// Every HTTP-carrier session this edge holds, by socket id.
#[derive(Default)]
pub(crate) struct Registry {
    sessions: detached::Registry<SocketId, CarrierSession>,
}

impl Registry {
    fn insert(&self, session: Arc<CarrierSession>) {
        self.sessions.insert(session.socket_id.clone(), session);
    }

    fn remove(&self, session: &Arc<CarrierSession>) {
        self.sessions.remove(&session.socket_id, session);
    }

    /// The live session with this id of the app with `key`, if this edge holds it.
    pub(crate) fn find(&self, key: &str, id: &str) -> Option<Arc<CarrierSession>> {
        let id = SocketId::parse(id).ok()?;
        self.sessions
            .get(&id)
            .filter(|session| session.key == key && !session.is_stopping())
    }
}

/// What a downstream request names, and where it comes from.
#[derive(Debug, Default)]
pub(crate) struct Downstream {
    pub session: Option<SocketId>,
    pub subs: Vec<Sub>,
    pub cursor: Option<String>,
    pub peer: Option<IpAddr>,
    /// The request's `Origin` header, checked against the app's allowed origins.
    pub origin: Option<String>,
}

/// What `open` gives a downstream request.
pub(crate) enum Opened {
    Attached(Attachment),
    /// Refused: these frames (`pusher:error` and the close), then the end.
    Refused(Vec<ByteString>),
    /// Too many sessions created lately (from this address or for this app): 429 with
    /// `Retry-After`.
    Limited(Duration),
}

/// The proof a request brings for the session it names.
enum Claim<'a> {
    /// None: a new session.
    Nothing,
    /// A cursor already verified by the session this edge held.
    Verified(Cursor),
    /// A cursor for a session this edge does not hold, verified once the key's secret is
    /// known.
    Unverified { id: &'a SocketId, cursor: &'a str },
}

/// Serves a downstream request (see the module's doc and ARCHITECTURE.md).
pub(crate) async fn open(state: &Arc<EdgeState>, key: &str, request: Downstream) -> Opened {
    // EventSource reconnects with its first URL: then only `Last-Event-ID` names the session.
    let claimed = request.session.clone().or_else(|| {
        let cursor = carrier_cursor::decode_unverified(request.cursor.as_deref()?).ok()?;
        Some(cursor.session())
    });
    let Some(id) = claimed else {
        return create(state, key, &request, Claim::Nothing).await;
    };
    let Some(held) = state
        .sb_sessions
        .sessions
        .get(&id)
        .filter(|held| held.key == key)
    else {
        let claim = match request.cursor.as_deref() {
            Some(cursor) => Claim::Unverified { id: &id, cursor },
            None => Claim::Nothing,
        };
        return create(state, key, &request, claim).await;
    };
    // Without proof of owning it, a live session is not someone else's to take.
    let Some(cursor) = held.verify(request.cursor.as_deref()) else {
        return create(state, key, &request, Claim::Nothing).await;
    };
    let from = if cursor.incarnation == held.incarnation {
        Some(cursor.frame)
    } else if held.rebuilt_from.as_deref() == Some(cursor.incarnation.as_str()) {
        // The incarnation this one was rebuilt from: its answer was lost, or two requests
        // raced; this one carries everything the rebuild sent.
        Some(0)
    } else {
        None
    };
    let text: Arc<str> = request.cursor.clone().unwrap_or_default().into();
    if let Some(attachment) = from.and_then(|from| held.attach(from, text)) {
        if !held.put_in_use().await {
            held.stop();
            return refused(key, CloseReason::OverConnectionQuota);
        }
        subscribe_missing(&held, &request.subs, &cursor).await;
        return Opened::Attached(attachment);
    }
    // Another incarnation's cursor (the client was served elsewhere), or one this
    // incarnation can no longer serve: rebuild from the cursor.
    held.stop();
    held.finished().await;
    create(state, key, &request, Claim::Verified(cursor)).await
}

/// Subscribes the session to each of `subs` it was not asked for yet.
async fn subscribe_missing(session: &Arc<CarrierSession>, subs: &[Sub], cursor: &Cursor) {
    for sub in subs.iter().take(session.max_channels()) {
        if !session.has_requested(&sub.channel) {
            session
                .send(&sub.subscribe_frame(cursor.channels.get(sub.channel.as_ref())))
                .await;
        }
    }
}

/// Starts a session: with the claimed id when the cursor proves it (a rebuild, which counts
/// against the quota at once), else with a new random id, on probation.
async fn create(
    state: &Arc<EdgeState>,
    key: &str,
    request: &Downstream,
    claim: Claim<'_>,
) -> Opened {
    // Before the catalog: a flood from one address costs no lookups.
    if let Err(wait) = state.carrier_limiter.check_address(request.peer) {
        return Opened::Limited(wait);
    }
    let (keyed, slot) = match admit(state, key, "", request.origin.as_deref()).await {
        Ok(admitted) => admitted,
        Err(reason) => return refused(key, reason),
    };
    if let Err(wait) = state.carrier_limiter.check_app(&keyed.app.id) {
        return Opened::Limited(wait);
    }
    let secret = keyed.secret.expose().to_owned();
    let secret = secret.as_str();
    let resume = match claim {
        Claim::Nothing => None,
        Claim::Verified(cursor) => Some(cursor),
        Claim::Unverified { id, cursor } => carrier_cursor::verify(cursor, key, secret, unix_now())
            .ok()
            .filter(|cursor| cursor.socket_id == id.as_str()),
    };
    let (socket_id, slot, rebuilt_from) = match &resume {
        Some(cursor) => (
            cursor.session(),
            Some(slot),
            Some(cursor.incarnation.clone()),
        ),
        // Admission checked the ceiling; the slot is taken once the session is in use.
        None => (state.socket_ids.next(), None, None),
    };
    let settings = &state.settings;
    let outbox = Arc::new(Outbox::new(socket_id.clone(), state.outbox_bounds()));
    let (sender, receiver) = super::session::inbound_queue(INBOUND_CAPACITY);
    let session = CarrierSession::new(Spec {
        socket_id: socket_id.clone(),
        key: key.to_owned(),
        secret: secret.to_owned(),
        app_id: keyed.app.id.clone(),
        limits: keyed.app.limits.clone(),
        incarnation: format!("{:016x}", rand::random::<u64>()),
        rebuilt_from,
        slot,
        slots: state.limits.clone(),
        outbox: outbox.clone(),
        inbound: sender,
        grace: settings.sb_session_grace,
        first_poll_grace: settings.sb_first_poll_grace,
        keepalive: settings.activity_timeout / 2,
        cursor_lifetime: settings.sb_cursor_lifetime,
        buffer_capacity: settings.outbox_capacity,
        buffer_max_bytes: settings.outbox_max_bytes,
    });
    // Attached before anyone can find it: a concurrent request may supersede this one, but
    // never leave it without an attachment.
    let attachment = session.attach_first();
    let source = session.source(receiver);
    state.sb_sessions.insert(session.clone());
    let span =
        tracing::info_span!("carrier_session", app_id = %keyed.app.id, socket_id = %socket_id);
    let task_state = state.clone();
    let task_session = session.clone();
    let origin = ClientOrigin {
        transport: "sb_http",
        address: request.peer,
    };
    actix_web::rt::spawn(
        async move {
            Connection::run(task_state.clone(), keyed, None, outbox, origin, source).await;
            task_session.after_connection().await;
            task_state.sb_sessions.remove(&task_session);
            task_session.mark_finished();
        }
        .instrument(span),
    );
    // After the task has started: more subscriptions than the channel holds wait for it.
    // A new session still resumes each channel from a cursor signed for this key, expired
    // or another session's: positions only ask for a replay of channels the subscriptions
    // (re-authorised for the new socket id) may read anyway, so a client back after the
    // cursor's lifetime loses nothing the history still holds.
    let cursor = resume
        .or_else(|| {
            let text = request.cursor.as_deref()?;
            let signed = carrier_cursor::verify(text, key, secret, 0).ok()?;
            Some(Cursor {
                channels: signed.channels,
                ..Cursor::default()
            })
        })
        .unwrap_or_default();
    // At most the plan's channels per connection: the rest would be refused anyway.
    for sub in request.subs.iter().take(session.max_channels()) {
        session
            .send(&sub.subscribe_frame(cursor.channels.get(sub.channel.as_ref())))
            .await;
    }
    Opened::Attached(attachment)
}

fn refused(key: &str, reason: CloseReason) -> Opened {
    tracing::info!(key = %key, code = reason.disconnect().code, "carrier session refused");
    crate::metrics::connection_closed(reason.disconnect().code);
    Opened::Refused(closing_events(reason))
}
