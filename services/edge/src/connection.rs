//! One admitted protocol connection, whatever carries it: a loop that feeds the protocol
//! session with client messages (from any `link::MessageSource`), close requests and timer
//! ticks, and performs what it returns.
//!
//! Everything sent to the client goes through the connection's `Outbox`, which the carrier
//! drains; nothing here awaits the client.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use broker::Publication;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use protocol::codes::{CloseReason, ErrorCode};
use protocol::delta::DeltaFormat;
use protocol::names::{AppKey, ChannelName, EventName, SocketId, UserId};
use protocol::session::{Credentials, Output, Session, SessionConfig};
use protocol::wire::{self, ChannelPosition, Member};
use tenancy::{App, KeyedApp};
use tokio::time::Instant;

use crate::console::report::{self, ClientOrigin};
use crate::limits::{ConnectionSlot, unix_now};
use crate::link::{Inbound, MessageSource, closing_frames, protocol_close};
use crate::outbox::{Outbox, Outgoing};
use crate::resume::{self, history_window};
use crate::watchlist;
use crate::{EdgeState, channel_events, node_subscriptions};

/// How the connection ended.
enum Ending {
    /// The client closed or went away: answer its close.
    ClientLeft,
    /// The server closes with a Pusher close code.
    Server(CloseReason),
    /// The client broke the WebSocket protocol; close with this frame.
    Protocol(Outgoing),
}

impl Ending {
    /// The close code the server sends (1000 answers a client's own close).
    fn close_code(&self) -> u16 {
        match self {
            Ending::ClientLeft => 1000,
            Ending::Server(reason) => reason.disconnect().code,
            Ending::Protocol(Outgoing::Close { code, .. }) => *code,
            Ending::Protocol(_) => 1002,
        }
    }
}

pub(crate) struct Connection {
    state: Arc<EdgeState>,
    app: Arc<App>,
    /// The key this connection came in on; if it is revoked, the connection closes.
    key: AppKey,
    session: Session,
    outbox: Arc<Outbox>,
    /// Created on the first client event, so idle connections carry no limiter.
    client_event_limiter: Option<Box<DefaultDirectRateLimiter>>,
    /// This connection's place in the app's connection count, released when it ends (`None`:
    /// the carrier holds it, see `carriers::session`).
    _slot: Option<ConnectionSlot>,
    /// Set while the outputs of one client frame refuse a subscription: its `pusher:error`
    /// twin is then not logged as a second refusal.
    refusing_subscription: AtomicBool,
}

impl Connection {
    /// Runs a connection whose outbox some carrier drains, until the client leaves or the
    /// server closes it.
    pub(crate) async fn run<Source: MessageSource>(
        state: Arc<EdgeState>,
        keyed: KeyedApp,
        slot: Option<ConnectionSlot>,
        outbox: Arc<Outbox>,
        origin: ClientOrigin,
        mut reader: Source,
    ) {
        let config = SessionConfig {
            activity_timeout: state.settings.activity_timeout,
            pong_timeout: state.settings.pong_timeout,
            max_client_event_bytes: keyed.app.limits.max_message_bytes,
            max_channels: keyed.app.limits.max_channels_per_connection,
        };
        let credentials = Credentials {
            key: keyed.key.clone(),
            secret: keyed.secret.expose().to_owned(),
        };
        let socket_id: SocketId = outbox.socket_id().clone();
        let (session, established) =
            Session::new(socket_id, credentials, config, Instant::now().into_std());
        outbox.send(Outgoing::Text(established.into()));
        state.hub.connect(&keyed.app.id, &outbox);
        report::connection_opened(&state, &keyed.app.id, outbox.socket_id(), origin);
        let mut connection = Connection {
            state,
            app: keyed.app,
            key: keyed.key,
            _slot: slot,
            session,
            outbox,
            client_event_limiter: None,
            refusing_subscription: Default::default(),
        };
        let ending = connection.serve(&mut reader).await;
        Box::pin(connection.clean_up()).await;
        crate::metrics::connection_closed(ending.close_code());
        let (state, socket_id) = (&connection.state, connection.outbox.socket_id());
        report::connection_closed(state, &connection.app.id, socket_id, ending.close_code());
        match ending {
            Ending::ClientLeft => connection.outbox.close_with([Outgoing::Close {
                code: 1000,
                reason: String::new(),
            }]),
            Ending::Server(reason) => connection.outbox.close_with(closing_frames(reason)),
            Ending::Protocol(close) => connection.outbox.close_with([close]),
        }
    }

    async fn serve<Source: MessageSource>(&mut self, reader: &mut Source) -> Ending {
        let ticker = tokio::time::sleep_until(Instant::from_std(self.session.next_deadline()));
        tokio::pin!(ticker);
        loop {
            let step = tokio::select! {
                message = reader.next() => match message {
                    None | Some(Ok(Inbound::Close)) => return Ending::ClientLeft,
                    // Boxed, like every step below: an idle connection's future then holds
                    // only the loop's own state, not the largest step's.
                    Some(Ok(message)) => Box::pin(self.on_message(message)).await,
                    Some(Err(error)) => {
                        let close = protocol_close(&error, self.state.settings.max_frame_bytes);
                        return Ending::Protocol(close);
                    }
                },
                () = self.outbox.task_wakeup() => Box::pin(self.on_wakeup()).await,
                () = &mut ticker => match self.session.on_tick(Instant::now().into_std()) {
                    Some(output) => Box::pin(self.perform(output)).await,
                    None => Ok(()),
                },
            };
            if let Err(reason) = step {
                return Ending::Server(reason);
            }
            ticker
                .as_mut()
                .reset(Instant::from_std(self.session.next_deadline()));
        }
    }

    async fn on_message(&mut self, message: Inbound) -> Result<(), CloseReason> {
        // A pending app change applies before the client's next frame is judged.
        if self.outbox.take_app_changed() {
            self.reread_app().await?;
        }
        let now = Instant::now().into_std();
        match message {
            Inbound::Text(text) => self.on_text(&text).await,
            Inbound::Binary(bytes) => match std::str::from_utf8(&bytes) {
                Ok(text) => self.on_text(text).await,
                Err(_) => {
                    self.send(wire::error(None, "Binary frames must carry UTF-8 JSON"));
                    Ok(())
                }
            },
            Inbound::Ping(bytes) => {
                self.session.note_activity(now);
                self.outbox.send(Outgoing::Pong(bytes));
                Ok(())
            }
            Inbound::Activity => {
                self.session.note_activity(now);
                Ok(())
            }
            Inbound::Close => Ok(()),
        }
    }

    /// A close request from elsewhere (slow consumer, terminate, shutdown) or an app change.
    async fn on_wakeup(&mut self) -> Result<(), CloseReason> {
        if let Some(reason) = self.outbox.close_reason() {
            return Err(reason);
        }
        if self.outbox.take_app_changed() {
            self.reread_app().await?;
        }
        Ok(())
    }

    async fn on_text(&mut self, text: &str) -> Result<(), CloseReason> {
        let outputs = self.session.on_text(text, Instant::now().into_std());
        // Until the next client frame (ticks and wake-ups send no refusals).
        let refusing = report::refuses_subscription(&outputs);
        self.refusing_subscription
            .store(refusing, Ordering::Relaxed);
        for output in outputs {
            self.perform(output).await?;
        }
        Ok(())
    }

    /// Re-reads the app after a catalog change: a revoked key closes with 4009, a disabled app
    /// with 4003; a new plan's limits apply from now on. If the catalog is unreachable the
    /// connection keeps what it has.
    async fn reread_app(&mut self) -> Result<(), CloseReason> {
        match self.state.catalog.find_by_key(&self.key).await {
            Ok(Some(keyed)) if keyed.app.enabled => {
                if keyed.app.limits.client_events_per_second
                    != self.app.limits.client_events_per_second
                {
                    self.client_event_limiter = None;
                }
                let limits = &keyed.app.limits;
                self.session
                    .set_limits(limits.max_message_bytes, limits.max_channels_per_connection);
                self.app = keyed.app;
                Ok(())
            }
            Ok(Some(_)) => Err(CloseReason::AppDisabled),
            Ok(None) => Err(CloseReason::Unauthorized),
            Err(error) => {
                tracing::warn!(%error, "catalog unavailable; keeping the app as it was");
                Ok(())
            }
        }
    }

    fn send(&self, frame: String) {
        let twin = self.refusing_subscription.load(Ordering::Relaxed);
        let (app, socket_id) = (&self.app.id, self.session.socket_id());
        report::frame_sent(&self.state, app, socket_id, &frame, twin);
        self.outbox.send(Outgoing::Text(frame.into()));
    }

    async fn perform(&mut self, output: Output) -> Result<(), CloseReason> {
        match output {
            Output::Send(frame) => self.send(frame),
            Output::Subscribe {
                channel,
                member,
                resume,
                delta,
            } => self.subscribe(channel, member, resume, delta).await,
            Output::Unsubscribe { channel, member } => self.unsubscribe(&channel, member).await,
            Output::ClientEvent {
                channel,
                event,
                frame,
                to: _,
            } => self.client_event(channel, event, frame).await,
            Output::SignedIn {
                user,
                watchlist,
                reply,
            } => {
                self.state.hub.sign_in(&self.app.id, &user, &self.outbox);
                let signin = watchlist::SignIn {
                    user: &user,
                    watchlist,
                    reply,
                };
                self.state
                    .watchlists
                    .sign_in(&self.app.id, signin, &self.outbox);
            }
            Output::Close(reason) => return Err(reason),
        }
        Ok(())
    }

    async fn subscribe(
        &mut self,
        channel: ChannelName,
        member: Option<Member>,
        resume: Option<ChannelPosition>,
        delta: Option<DeltaFormat>,
    ) {
        if let Some(refusal) = report::refuse_on_system_app(&self.state, &self.app.id, &channel) {
            self.session.subscription_refused(&channel);
            return self.send(refusal);
        }
        // The channel's live frames wait in the outbox until the subscriber has been told where
        // it stands (and sent what it missed); then only those after that position follow.
        self.outbox.hold(&channel);
        // Registered before the history is read, so an event published after the read is
        // delivered live, and one published before it is in the history: none is missed.
        let added =
            node_subscriptions::subscribe(&self.state, &self.app.id, &channel, &self.outbox).await;
        let joined = match &member {
            None => None,
            Some(member) => match channel_events::join_presence(
                &self.state,
                &self.app,
                self.session.socket_id(),
                &channel,
                member,
            )
            .await
            {
                Ok(joined) => {
                    // Before the history read, like the channel's registration above.
                    let user = &member.user_id;
                    let hub = &self.state.hub;
                    hub.join_member(&self.app.id, &channel, user, &self.outbox);
                    Some(joined)
                }
                Err(refusal) => {
                    node_subscriptions::unsubscribe(
                        &self.state,
                        &self.app.id,
                        &channel,
                        &self.outbox,
                    )
                    .await;
                    self.outbox.discard_held(&channel);
                    // Not on the channel: no client events there, no slot of the channel limit.
                    self.session.subscription_refused(&channel);
                    return self.send(refusal);
                }
            },
        };
        // Counted cluster-wide only once the subscription stands (a refused one never was).
        let occupancy = match added {
            Some(_) => channel_events::count_subscribed(&self.state, &self.app.id, &channel).await,
            None => None,
        };
        if added.is_some() {
            let socket_id = self.session.socket_id();
            report::subscribed(&self.state, &self.app.id, socket_id, &channel);
        }
        // While held: the first frame after the confirmation is full, deltas follow.
        self.set_delta(&channel, delta.is_some());
        let catch_up = resume::catch_up(
            self.state.cluster.broker.as_ref(),
            &self.app.id,
            &channel,
            resume.as_ref(),
            member.as_ref().map(|member| &member.user_id),
            self.outbox.room(),
        )
        .await;
        let position = catch_up.position.as_ref();
        self.send(match &joined {
            None => wire::subscription_succeeded(channel.as_str(), position),
            Some(joined) => {
                // The member's own STUN/TURN servers (TURN credentials are per user and
                // short-lived), for the SDK's WebRTC helper.
                let ice_servers = member
                    .as_ref()
                    .and_then(|member| self.app.ice.for_user(&member.user_id, unix_now()));
                let members = &joined.members;
                wire::presence_subscription_succeeded_with(
                    channel.as_str(),
                    members,
                    position,
                    ice_servers,
                )
            }
        });
        channel_events::subscribed(&self.state, &self.app, &channel, &self.outbox, occupancy).await;
        if let Some(failure) = catch_up.failure {
            self.send(failure);
        }
        let (mut replayed, mut replayed_bytes) = (0u64, 0u64);
        for frame in catch_up.replay {
            replayed += 1;
            replayed_bytes += frame.len() as u64;
            self.outbox.push(frame);
        }
        // A connection that was already on the channel has had its live frames all along: a
        // plain re-subscribe drops none of them.
        let release_after = match (added, &resume) {
            (None, None) => None,
            _ => catch_up.release_after,
        };
        let (dropped, dropped_bytes) = self.outbox.release(&channel, release_after);
        // A replayed frame is a delivery; a held duplicate of one was counted by fan-out.
        self.count_replay(
            replayed.saturating_sub(dropped),
            replayed_bytes.saturating_sub(dropped_bytes),
        );
        if let (Some(member), Some(joined)) = (member, joined)
            && joined.first_for_user
        {
            channel_events::member_added(&self.state, &self.app.id, &channel, &member.user_id);
            let frame = wire::member_added(channel.as_str(), &member);
            self.publish(channel, frame, true, None).await;
        }
    }

    /// Counts frames sent from history like fan-out deliveries (messages and bytes out).
    fn count_replay(&self, frames: u64, bytes: u64) {
        if frames == 0 {
            return;
        }
        self.state
            .limits
            .count_messages(&self.app.id, frames, unix_now());
        self.state
            .meter
            .delivered_to_one(&self.app.id, frames, bytes);
        crate::metrics::metrics().delivered.increment(frames);
    }

    /// Turns delta updates on or off for one of this connection's channels (a re-subscribe
    /// may change its mind); the node keeps a base only while the channel has a delta
    /// subscriber, and within its bounds (past them, full events).
    fn set_delta(&self, channel: &ChannelName, wanted: bool) {
        let deltas = self.state.hub.deltas();
        if wanted {
            if self.outbox.enable_delta(channel) && !deltas.subscribed(&self.app.id, channel) {
                self.outbox.disable_delta(channel);
            }
        } else if self.outbox.disable_delta(channel) {
            deltas.unsubscribed(&self.app.id, channel);
        }
    }

    async fn unsubscribe(&mut self, channel: &ChannelName, member: Option<UserId>) {
        self.set_delta(channel, false);
        let removed =
            node_subscriptions::unsubscribe(&self.state, &self.app.id, channel, &self.outbox).await;
        if removed.is_some() {
            report::unsubscribed(&self.state, &self.app.id, self.session.socket_id(), channel);
            let left = channel_events::count_unsubscribed(&self.state, &self.app.id, channel).await;
            channel_events::unsubscribed(&self.state, &self.app, channel, left).await;
        }
        let Some(user) = member else {
            return;
        };
        let hub = &self.state.hub;
        hub.leave_member(&self.app.id, channel, &user, &self.outbox);
        let socket_id = self.session.socket_id().clone();
        match self
            .state
            .cluster
            .broker
            .presence_leave(&self.app.id, channel, &socket_id)
            .await
        {
            Ok(Some(user)) => {
                channel_events::member_removed(&self.state, &self.app.id, channel, &user);
                let frame = wire::member_removed(channel.as_str(), &user);
                self.publish(channel.clone(), frame, false, None).await;
            }
            Ok(None) => {}
            Err(error) => tracing::warn!(%error, "presence leave failed"),
        }
    }

    async fn client_event(&mut self, channel: ChannelName, event: EventName, frame: String) {
        if report::is_system_app(&self.state, &self.app.id) {
            // The console's channels carry the platform's events only: no client may forge one.
            return self.send(wire::error(
                None,
                "client events are not allowed on this app",
            ));
        }
        if !self.app.client_events {
            // Pusher's own words for an app with client events off.
            let message = "To send client events, you must enable this feature in the Settings page of your dashboard.";
            return self.send(wire::error(None, message));
        }
        let per_second = self.app.limits.client_events_per_second;
        let limiter = self.client_event_limiter.get_or_insert_with(|| {
            let rate = NonZeroU32::new(per_second).unwrap_or(NonZeroU32::MIN);
            Box::new(RateLimiter::direct(Quota::per_second(rate)))
        });
        if limiter.check().is_err() {
            let code = ErrorCode::ClientEventRateLimited.code();
            let message =
                format!("Client event rejected due to rate limit ({per_second} per second)");
            return self.send(wire::error(Some(code), &message));
        }
        let limits = &self.state.limits;
        let now = unix_now();
        match limits
            .may_publish(&self.app.id, &self.app.limits, now)
            .await
        {
            Ok(true) => {}
            Ok(false) => {
                let message = "Client event rejected - the app is over its daily message quota";
                return self.send(wire::error(None, message));
            }
            Err(error) => {
                tracing::warn!(%error, "daily message count unavailable");
                let message = "Client event rejected - message counts are unavailable";
                return self.send(wire::error(None, message));
            }
        }
        limits.count_messages(&self.app.id, 1, now);
        self.state.meter.published(&self.app.id, 1);
        crate::metrics::metrics().published_by_clients.increment(1);
        let socket_id = self.session.socket_id();
        let sent = (&channel, &event, frame.len());
        report::client_event(&self.state, &self.app.id, socket_id, sent);
        channel_events::client_event(&self.state, &self.app.id, &channel, socket_id, &frame);
        let window = history_window(&self.app.limits);
        self.publish(channel, frame, true, Some(window)).await;
    }

    /// Publishes to the channel through the broker, excluding this connection if asked. Client
    /// events pass their plan's history window (they get serials); protocol frames `None`.
    async fn publish(
        &self,
        channel: ChannelName,
        frame: String,
        exclude_self: bool,
        history: Option<broker::HistoryWindow>,
    ) {
        let except = exclude_self.then(|| self.session.socket_id().clone());
        let publication = Publication {
            app: self.app.id.clone(),
            channel,
            frame: frame.into(),
            except,
            history,
            serial: None,
        };
        if let Err(error) = self.state.cluster.broker.publish(publication).await {
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
            self.state.watchlists.sign_out(&self.app.id, &self.outbox);
        }
        self.state.hub.disconnect(&self.app.id, &self.outbox);
    }
}
