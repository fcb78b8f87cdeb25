//! The single-node broker: publications go straight to this node's sink, presence and
//! channel histories live in maps.
//!
//! Each channel's history has a mutex of its own, held while a publication is given its
//! serial, stored and delivered: concurrent publishers to one channel are thereby put in one
//! order, the same for serials, history and every subscriber, while other channels proceed.
//! The clock is read here, at the boundary; `ChannelHistory` takes time as an argument.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, TryLockError};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use protocol::names::{AppId, ChannelName, SocketId, UserId};
use protocol::wire::Member;

use crate::{
    Broker, BrokerError, ChannelHistory, Clock, DeliverySink, History, Position, PresenceJoin,
    Publication,
};

type ChannelKey = (AppId, ChannelName);

/// A channel whose stored frames have all left the window and that no one published to or
/// asked about for this long is forgotten, epoch and serial included: a later resume gets an
/// explicit gap. This bounds the memory of channels used once.
pub const FORGET_IDLE_CHANNELS_AFTER: Duration = Duration::from_secs(60 * 60);
/// Idle channels are looked for at most this often.
const SWEEP_EVERY: Duration = Duration::from_secs(60);

/// In-process pub/sub, presence and channel history for one node.
pub struct Local {
    sink: Arc<dyn DeliverySink>,
    clock: Clock,
    // A std mutex: it is never held across an await, and presence changes are short.
    presence: Mutex<HashMap<ChannelKey, PresenceChannel>>,
    histories: Mutex<Histories>,
}

struct Histories {
    channels: HashMap<ChannelKey, Arc<Mutex<HistorySlot>>>,
    last_sweep: Instant,
}

struct HistorySlot {
    /// Set when the sweep removed this slot from the map: whoever still holds it looks again.
    forgotten: bool,
    history: ChannelHistory,
}

/// A new epoch: 12 random characters of `[0-9a-f]`, safe to splice into JSON unescaped.
fn new_epoch() -> String {
    format!("{:012x}", rand::random::<u64>() >> 16)
}

#[derive(Default)]
struct PresenceChannel {
    users: BTreeMap<UserId, PresenceUser>,
    user_of_socket: HashMap<SocketId, UserId>,
}

struct PresenceUser {
    user_info: serde_json::Value,
    sockets: HashSet<SocketId>,
}

impl PresenceChannel {
    fn members(&self) -> Vec<Member> {
        self.users
            .iter()
            .map(|(user_id, user)| Member {
                user_id: user_id.clone(),
                user_info: user.user_info.clone(),
            })
            .collect()
    }
}

impl Local {
    pub fn new(sink: Arc<dyn DeliverySink>) -> Self {
        Self::with_clock(sink, Clock::system())
    }

    /// A broker whose history ages by `clock` (the conformance suite moves it by hand).
    pub fn with_clock(sink: Arc<dyn DeliverySink>, clock: Clock) -> Self {
        let now = clock.now();
        Self {
            sink,
            clock,
            presence: Mutex::new(HashMap::new()),
            histories: Mutex::new(Histories {
                channels: HashMap::new(),
                last_sweep: now,
            }),
        }
    }

    /// Runs `f` on the channel's history under the channel's lock, starting a history (a new
    /// epoch) if the channel has none.
    fn with_history<R>(
        &self,
        app: &AppId,
        channel: &ChannelName,
        now: Instant,
        f: impl FnOnce(&mut ChannelHistory) -> R,
    ) -> R {
        loop {
            let slot = {
                let mut histories = self.histories.lock().expect("history lock poisoned");
                if now.saturating_duration_since(histories.last_sweep) >= SWEEP_EVERY {
                    histories.last_sweep = now;
                    forget_idle(&mut histories.channels, now);
                }
                histories
                    .channels
                    .entry((app.clone(), channel.clone()))
                    .or_insert_with(|| {
                        Arc::new(Mutex::new(HistorySlot {
                            forgotten: false,
                            history: ChannelHistory::new(new_epoch(), now),
                        }))
                    })
                    .clone()
            };
            let mut slot = slot.lock().expect("channel history lock poisoned");
            if !slot.forgotten {
                return f(&mut slot.history);
            }
        }
    }
}

/// Drops the histories that may be forgotten. A channel whose lock is held is in use: kept.
fn forget_idle(channels: &mut HashMap<ChannelKey, Arc<Mutex<HistorySlot>>>, now: Instant) {
    channels.retain(|_, slot| match slot.try_lock() {
        Ok(mut slot) => {
            let forget = slot.history.is_forgettable(now, FORGET_IDLE_CHANNELS_AFTER);
            slot.forgotten = forget;
            !forget
        }
        Err(TryLockError::WouldBlock) => true,
        Err(TryLockError::Poisoned(_)) => false,
    });
}

#[async_trait]
impl Broker for Local {
    async fn publish(&self, mut publication: Publication) -> Result<(), BrokerError> {
        let Some(window) = publication.history else {
            self.sink.deliver(&publication);
            return Ok(());
        };
        let now = self.clock.now();
        let (app, channel) = (publication.app.clone(), publication.channel.clone());
        self.with_history(&app, &channel, now, |history| {
            let (serial, stamped) = history.append(&publication.frame, window, now);
            publication.frame = stamped;
            publication.serial = Some(serial);
            // Delivered under the channel's lock, so no later serial overtakes this one.
            self.sink.deliver(&publication);
        });
        Ok(())
    }

    async fn history(
        &self,
        app: &AppId,
        channel: &ChannelName,
        since_serial: Option<u64>,
        epoch: Option<&str>,
    ) -> Result<History, BrokerError> {
        let now = self.clock.now();
        Ok(self.with_history(app, channel, now, |history| {
            history.read(since_serial, epoch, now)
        }))
    }

    async fn position(&self, app: &AppId, channel: &ChannelName) -> Result<Position, BrokerError> {
        let now = self.clock.now();
        Ok(self.with_history(app, channel, now, |history| {
            history.touch(now);
            Position {
                epoch: history.epoch().to_owned(),
                serial: history.latest(),
            }
        }))
    }

    async fn presence_join(
        &self,
        app: &AppId,
        channel: &ChannelName,
        socket: &SocketId,
        member: Member,
        max_members: usize,
    ) -> Result<PresenceJoin, BrokerError> {
        let mut presence = self.presence.lock().expect("presence lock poisoned");
        let entry = presence.entry((app.clone(), channel.clone())).or_default();
        if entry.user_of_socket.contains_key(socket) {
            return Ok(PresenceJoin {
                members: entry.members(),
                first_for_user: false,
            });
        }
        let new_user = !entry.users.contains_key(&member.user_id);
        if new_user && entry.users.len() >= max_members {
            return Err(BrokerError::PresenceFull { max: max_members });
        }
        entry
            .user_of_socket
            .insert(socket.clone(), member.user_id.clone());
        let user = entry
            .users
            .entry(member.user_id)
            .or_insert_with(|| PresenceUser {
                user_info: member.user_info,
                sockets: HashSet::new(),
            });
        user.sockets.insert(socket.clone());
        let first_for_user = user.sockets.len() == 1;
        Ok(PresenceJoin {
            members: entry.members(),
            first_for_user,
        })
    }

    async fn presence_leave(
        &self,
        app: &AppId,
        channel: &ChannelName,
        socket: &SocketId,
    ) -> Result<Option<UserId>, BrokerError> {
        let mut presence = self.presence.lock().expect("presence lock poisoned");
        let key = (app.clone(), channel.clone());
        let Some(entry) = presence.get_mut(&key) else {
            return Ok(None);
        };
        let Some(user_id) = entry.user_of_socket.remove(socket) else {
            return Ok(None);
        };
        let mut left = None;
        if let Some(user) = entry.users.get_mut(&user_id) {
            user.sockets.remove(socket);
            if user.sockets.is_empty() {
                entry.users.remove(&user_id);
                left = Some(user_id);
            }
        }
        if entry.users.is_empty() {
            presence.remove(&key);
        }
        Ok(left)
    }

    async fn presence_members(
        &self,
        app: &AppId,
        channel: &ChannelName,
    ) -> Result<Vec<Member>, BrokerError> {
        let presence = self.presence.lock().expect("presence lock poisoned");
        let key = (app.clone(), channel.clone());
        Ok(presence
            .get(&key)
            .map(PresenceChannel::members)
            .unwrap_or_default())
    }
}
