//! One WebSocket connection: admission, then a loop that feeds the protocol session with
//! client frames, outbox wake-ups and timer ticks, and performs what it returns.

use std::collections::VecDeque;
use std::num::NonZeroU32;
use std::sync::Arc;

use actix_web::{HttpRequest, HttpResponse, web};
use actix_ws::{AggregatedMessage, CloseCode, ProtocolError};
use broker::Publication;
use bytestring::ByteString;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use protocol::codes::{CloseReason, ErrorCode};
use protocol::names::{AppKey, ChannelName, UserId};
use protocol::session::{Credentials, Output, Session, SessionConfig};
use protocol::wire::{self, Member};
use tenancy::{App, KeyedApp};
use tokio::time::Instant;
use tracing::Instrument;

use crate::EdgeState;
use crate::outbox::Outbox;

/// How long the server tries to hand a client its close frame.
const CLOSE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// `GET /app/{key}`: upgrades to a WebSocket, then admits or refuses with Pusher's codes
/// (refusals are sent over the open socket, as pusher-js reads them from the close code).
pub async fn websocket(
    request: HttpRequest,
    body: web::Payload,
    state: web::Data<EdgeState>,
) -> actix_web::Result<HttpResponse> {
    let key = request
        .match_info()
        .get("key")
        .unwrap_or_default()
        .to_owned();
    let (response, ws, stream) = actix_ws::handle(&request, body)?;
    let max = state.settings.max_frame_bytes;
    let stream = stream
        .max_frame_size(max)
        .aggregate_continuations()
        .max_continuation_size(max);
    let admission = admit(&state, &key, request.query_string()).await;
    let state = state.into_inner();
    match admission {
        Ok(keyed) => {
            let socket_id = state.socket_ids.next();
            let span =
                tracing::info_span!("connection", app_id = %keyed.app.id, socket_id = %socket_id);
            actix_web::rt::spawn(
                Connection::run(state, keyed, socket_id, ws, stream).instrument(span),
            );
        }
        Err(reason) => {
            tracing::info!(key = %key, code = reason.disconnect().code, "connection refused");
            actix_web::rt::spawn(close(ws, reason));
        }
    }
    Ok(response)
}

async fn admit(state: &EdgeState, key: &str, query: &str) -> Result<KeyedApp, CloseReason> {
    let params: Vec<(String, String)> = serde_urlencoded::from_str(query).unwrap_or_default();
    // A missing `protocol` is taken as 7, as soketi and sockudo do, so lax clients connect.
    if let Some((_, version)) = params.iter().find(|(name, _)| name == "protocol") {
        let version: u32 = version
            .parse()
            .map_err(|_| CloseReason::InvalidProtocolFormat)?;
        if !(5..=7).contains(&version) {
            return Err(CloseReason::UnsupportedProtocol);
        }
    }
    let key = AppKey::parse(key).map_err(|_| CloseReason::UnknownAppKey)?;
    let keyed = match state.catalog.find_by_key(&key).await {
        Ok(Some(keyed)) => keyed,
        Ok(None) => return Err(CloseReason::UnknownAppKey),
        Err(error) => {
            tracing::warn!(%error, "app catalog unavailable; asking the client to back off");
            return Err(CloseReason::SlowConsumer);
        }
    };
    if !keyed.app.enabled {
        return Err(CloseReason::AppDisabled);
    }
    Ok(keyed)
}

/// Sends the reason as `pusher:error`, then closes with its code.
async fn close(mut ws: actix_ws::Session, reason: CloseReason) {
    let disconnect = reason.disconnect();
    let _ = ws
        .text(wire::error(Some(disconnect.code), disconnect.reason))
        .await;
    let close = actix_ws::CloseReason {
        code: CloseCode::Other(disconnect.code),
        description: Some(disconnect.reason.to_owned()),
    };
    let _ = ws.close(Some(close)).await;
}

struct Connection {
    state: Arc<EdgeState>,
    app: Arc<App>,
    /// The key this connection came in on; if it is revoked, the connection closes.
    key: AppKey,
    session: Session,
    ws: actix_ws::Session,
    outbox: Arc<Outbox>,
    /// The outbox's second buffer (see `Outbox::swap_into`); empty between flushes.
    spare_frames: VecDeque<ByteString>,
    /// Created on the first client event, so idle connections carry no limiter.
    client_event_limiter: Option<Box<DefaultDirectRateLimiter>>,
}

impl Connection {
    async fn run(
        state: Arc<EdgeState>,
        keyed: KeyedApp,
        socket_id: protocol::names::SocketId,
        mut ws: actix_ws::Session,
        mut stream: actix_ws::AggregatedMessageStream,
    ) {
        let config = SessionConfig {
            activity_timeout: state.settings.activity_timeout,
            pong_timeout: state.settings.pong_timeout,
            max_client_event_bytes: keyed.app.limits.max_message_bytes,
        };
        let credentials = Credentials {
            key: keyed.key.clone(),
            secret: keyed.secret.expose().to_owned(),
        };
        let outbox = Arc::new(Outbox::new(
            socket_id.clone(),
            state.settings.outbox_capacity,
        ));
        let (session, established) =
            Session::new(socket_id, credentials, config, Instant::now().into_std());
        if ws.text(established).await.is_err() {
            return;
        }
        state.hub.connect(&keyed.app.id, &outbox);
        let mut connection = Connection {
            state,
            app: keyed.app,
            key: keyed.key,
            session,
            ws,
            outbox,
            client_event_limiter: None,
            spare_frames: VecDeque::new(),
        };
        let close_reason = connection.serve(&mut stream).await;
        connection.clean_up().await;
        if let Some(reason) = close_reason {
            // A client that stopped reading may never take the close frame; don't wait forever.
            let _ = tokio::time::timeout(CLOSE_TIMEOUT, close(connection.ws, reason)).await;
        }
    }

    /// Runs until the client leaves or the server closes; returns the server's reason.
    async fn serve(
        &mut self,
        stream: &mut actix_ws::AggregatedMessageStream,
    ) -> Option<CloseReason> {
        let ticker = tokio::time::sleep_until(Instant::from_std(self.session.next_deadline()));
        tokio::pin!(ticker);
        loop {
            let step = tokio::select! {
                message = stream.recv() => self.on_message(message).await,
                () = self.outbox.ready() => self.flush().await,
                () = &mut ticker => match self.session.on_tick(Instant::now().into_std()) {
                    Some(output) => self.perform(output).await,
                    None => Ok(()),
                },
            };
            match step {
                Ok(()) => {}
                Err(Stop::ClientGone) => return None,
                Err(Stop::Close(reason)) => return Some(reason),
                Err(Stop::Protocol(code, description)) => {
                    let close = actix_ws::CloseReason {
                        code,
                        description: Some(description),
                    };
                    let _ = self.ws.clone().close(Some(close)).await;
                    return None;
                }
            }
            ticker
                .as_mut()
                .reset(Instant::from_std(self.session.next_deadline()));
        }
    }

    async fn on_message(
        &mut self,
        message: Option<Result<AggregatedMessage, ProtocolError>>,
    ) -> Result<(), Stop> {
        let now = Instant::now().into_std();
        // A pending app change applies before the client's next frame is judged.
        if self.outbox.take_app_changed() {
            self.reread_app().await?;
        }
        match message {
            Some(Ok(AggregatedMessage::Text(text))) => self.on_text(&text).await,
            Some(Ok(AggregatedMessage::Binary(bytes))) => match std::str::from_utf8(&bytes) {
                Ok(text) => self.on_text(text).await,
                Err(_) => {
                    self.send(wire::error(None, "Binary frames must carry UTF-8 JSON"))
                        .await
                }
            },
            Some(Ok(AggregatedMessage::Ping(bytes))) => {
                self.session.note_activity(now);
                self.ws.pong(&bytes).await.map_err(|_| Stop::ClientGone)
            }
            Some(Ok(AggregatedMessage::Pong(_))) => {
                self.session.note_activity(now);
                Ok(())
            }
            Some(Ok(AggregatedMessage::Close(_))) | None => Err(Stop::ClientGone),
            Some(Err(ProtocolError::Overflow)) => Err(Stop::Protocol(
                CloseCode::Size,
                format!(
                    "frame larger than {} bytes",
                    self.state.settings.max_frame_bytes
                ),
            )),
            Some(Err(error)) => Err(Stop::Protocol(CloseCode::Protocol, error.to_string())),
        }
    }

    async fn on_text(&mut self, text: &str) -> Result<(), Stop> {
        let outputs = self.session.on_text(text, Instant::now().into_std());
        for output in outputs {
            self.perform(output).await?;
        }
        Ok(())
    }

    /// Sends queued fan-out frames until the outbox is empty, or closes if it asks to.
    async fn flush(&mut self) -> Result<(), Stop> {
        if self.outbox.take_app_changed() {
            self.reread_app().await?;
        }
        loop {
            if let Some(reason) = self.outbox.close_reason() {
                return Err(Stop::Close(reason));
            }
            let mut frames = std::mem::take(&mut self.spare_frames);
            self.outbox.swap_into(&mut frames);
            if frames.is_empty() {
                self.spare_frames = frames;
                return Ok(());
            }
            while let Some(frame) = frames.pop_front() {
                self.send_unless_closed(frame).await?;
            }
            self.spare_frames = frames;
        }
    }

    /// Sends one frame, but gives up if the outbox asks to close meanwhile: a client that
    /// stops reading blocks the send, and must not block its own eviction.
    async fn send_unless_closed(&mut self, frame: ByteString) -> Result<(), Stop> {
        let Self { ws, outbox, .. } = self;
        let send = ws.text(frame);
        tokio::pin!(send);
        loop {
            tokio::select! {
                sent = &mut send => return sent.map_err(|_| Stop::ClientGone),
                () = outbox.ready() => {
                    if let Some(reason) = outbox.close_reason() {
                        return Err(Stop::Close(reason));
                    }
                }
            }
        }
    }

    /// Re-reads the app after a catalog change: a revoked key closes with 4009, a disabled app
    /// with 4003; a new plan's limits apply from now on. If the catalog is unreachable the
    /// connection keeps what it has.
    async fn reread_app(&mut self) -> Result<(), Stop> {
        match self.state.catalog.find_by_key(&self.key).await {
            Ok(Some(keyed)) if keyed.app.enabled => {
                if keyed.app.limits.client_events_per_second
                    != self.app.limits.client_events_per_second
                {
                    self.client_event_limiter = None;
                }
                self.session
                    .set_max_client_event_bytes(keyed.app.limits.max_message_bytes);
                self.app = keyed.app;
                Ok(())
            }
            Ok(Some(_)) => Err(Stop::Close(CloseReason::AppDisabled)),
            Ok(None) => Err(Stop::Close(CloseReason::Unauthorized)),
            Err(error) => {
                tracing::warn!(%error, "catalog unavailable; keeping the app as it was");
                Ok(())
            }
        }
    }

    async fn send(&mut self, frame: String) -> Result<(), Stop> {
        self.ws.text(frame).await.map_err(|_| Stop::ClientGone)
    }

    async fn perform(&mut self, output: Output) -> Result<(), Stop> {
        match output {
            Output::Send(frame) => self.send(frame).await,
            Output::Subscribe { channel, member } => self.subscribe(channel, member).await,
            Output::Unsubscribe { channel, member } => {
                self.unsubscribe(&channel, member).await;
                Ok(())
            }
            Output::ClientEvent { channel, frame, .. } => self.client_event(channel, frame).await,
            Output::SignedIn { user } => {
                self.state.hub.sign_in(&self.app.id, &user, &self.outbox);
                Ok(())
            }
            Output::Close(reason) => Err(Stop::Close(reason)),
        }
    }

    async fn subscribe(
        &mut self,
        channel: ChannelName,
        member: Option<Member>,
    ) -> Result<(), Stop> {
        // Registered before the confirmation is sent, so no event published after the client
        // sees `subscription_succeeded` can miss it.
        self.state
            .hub
            .subscribe(&self.app.id, &channel, &self.outbox);
        let Some(member) = member else {
            return self
                .send(wire::subscription_succeeded(channel.as_str()))
                .await;
        };
        let socket_id = self.session.socket_id().clone();
        let joined = self
            .state
            .broker
            .presence_join(&self.app.id, &channel, &socket_id, member.clone())
            .await;
        let joined = match joined {
            Ok(joined) => joined,
            Err(error) => {
                tracing::warn!(%error, "presence join failed");
                self.state
                    .hub
                    .unsubscribe(&self.app.id, &channel, &self.outbox);
                let frame = wire::subscription_error(
                    channel.as_str(),
                    "ServerError",
                    "presence unavailable",
                    503,
                );
                return self.send(frame).await;
            }
        };
        self.send(wire::presence_subscription_succeeded(
            channel.as_str(),
            &joined.members,
        ))
        .await?;
        if joined.first_for_user {
            let frame = wire::member_added(channel.as_str(), &member);
            self.publish(channel, frame, true).await;
        }
        Ok(())
    }

    async fn unsubscribe(&mut self, channel: &ChannelName, member: Option<UserId>) {
        self.state
            .hub
            .unsubscribe(&self.app.id, channel, &self.outbox);
        if member.is_none() {
            return;
        }
        let socket_id = self.session.socket_id().clone();
        match self
            .state
            .broker
            .presence_leave(&self.app.id, channel, &socket_id)
            .await
        {
            Ok(Some(user)) => {
                let frame = wire::member_removed(channel.as_str(), &user);
                self.publish(channel.clone(), frame, false).await;
            }
            Ok(None) => {}
            Err(error) => tracing::warn!(%error, "presence leave failed"),
        }
    }

    async fn client_event(&mut self, channel: ChannelName, frame: String) -> Result<(), Stop> {
        let per_second = self.app.limits.client_events_per_second;
        let limiter = self.client_event_limiter.get_or_insert_with(|| {
            let rate = NonZeroU32::new(per_second).unwrap_or(NonZeroU32::MIN);
            Box::new(RateLimiter::direct(Quota::per_second(rate)))
        });
        if limiter.check().is_err() {
            let code = ErrorCode::ClientEventRateLimited.code();
            let message =
                format!("Client event rejected due to rate limit ({per_second} per second)");
            return self.send(wire::error(Some(code), &message)).await;
        }
        self.publish(channel, frame, true).await;
        Ok(())
    }

    /// Publishes to the channel through the broker, excluding this connection if asked.
    async fn publish(&self, channel: ChannelName, frame: String, exclude_self: bool) {
        let except = exclude_self.then(|| self.session.socket_id().clone());
        let publication = Publication {
            app: self.app.id.clone(),
            channel,
            frame: frame.into(),
            except,
        };
        if let Err(error) = self.state.broker.publish(publication).await {
            tracing::warn!(%error, "publish failed");
        }
    }

    /// Leaves every channel (telling presence members) and the registries.
    async fn clean_up(&mut self) {
        for output in self.session.on_closed() {
            if let Output::Unsubscribe { channel, member } = output {
                self.unsubscribe(&channel, member).await;
            }
        }
        if let Some(user) = self.session.signed_in_user().cloned() {
            self.state.hub.sign_out(&self.app.id, &user, &self.outbox);
        }
        self.state.hub.disconnect(&self.app.id, &self.outbox);
    }
}

enum Stop {
    /// The client closed or the socket failed; nothing more can be sent.
    ClientGone,
    /// The server ends the connection with a Pusher close code.
    Close(CloseReason),
    /// The client broke the WebSocket protocol (an oversize frame, a bad opcode).
    Protocol(CloseCode, String),
}
