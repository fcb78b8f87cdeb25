//! The single-node broker: publications go straight to this node's sink, presence and
//! channel histories live in maps.
//!
//! Each channel's history has a mutex of its own, held while a publication is given its
//! serial, stored and delivered: concurrent publishers to one channel are thereby put in one
//! order, the same for serials, history and every subscriber, while other channels proceed.
//! The clock is read here, at the boundary; `ChannelHistory` takes time as an argument.
//!
//! Memory is bounded three ways: only channels that were published to have a history slot
//! (a subscriber of a quiet channel is told a position computed from the channel's name), an
//! app has at most `max_channels_per_app` slots (a new one evicts the app's oldest), and the
//! stored frames are within the byte budgets of `budget` (the app's, from its plan, and the
//! node's). Lock order: the slot map, then a channel, then the budget.
//!
//! Epochs: a channel's history starts in `fresh_epoch`, a keyed hash of its name, so the
//! position told to a subscriber of a channel with no slot is the one its first event gets.
//! An epoch is never used again once a history with events in it ended (forgotten or evicted):
//! then the hash key changes, which gives every channel without a slot a new fresh epoch (a
//! client that resumes from a position on a still-empty channel then gets `epoch_changed`,
//! never a silent gap).

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::hash::{BuildHasher, RandomState};
use std::sync::{Arc, Mutex, TryLockError};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use protocol::names::{AppId, ChannelName, SocketId, UserId};
use protocol::wire::Member;

use crate::budget::{Budget, Budgeted, Eviction, Marks};
use crate::{
    Broker, BrokerError, ChannelHistory, Clock, DeliverySink, History, HistoryUsage, Position,
    PresenceJoin, Publication,
};

type ChannelKey = (AppId, ChannelName);

/// A channel whose stored frames have all left the window and that no one published to or
/// asked about for this long is forgotten, epoch and serial included: a later resume gets an
/// explicit gap. This bounds the memory of channels used once.
pub const FORGET_IDLE_CHANNELS_AFTER: Duration = Duration::from_secs(60 * 60);
/// Idle channels are looked for at most this often.
const SWEEP_EVERY: Duration = Duration::from_secs(60);

/// The node's bounds on history memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HistoryLimits {
    /// Bytes of stored frames for all apps together.
    pub max_bytes: usize,
    /// Channels with a history slot per app.
    pub max_channels_per_app: usize,
}

impl Default for HistoryLimits {
    /// 256 MiB for the node, 10,000 channels per app.
    fn default() -> Self {
        Self {
            max_bytes: 256 * 1024 * 1024,
            max_channels_per_app: 10_000,
        }
    }
}

/// In-process pub/sub, presence and channel history for one node.
pub struct Local {
    sink: Arc<dyn DeliverySink>,
    clock: Clock,
    // A std mutex: it is never held across an await, and presence changes are short.
    presence: Mutex<HashMap<ChannelKey, PresenceChannel>>,
    histories: Mutex<Histories>,
    budget: Mutex<Budget<Slot>>,
    max_channels_per_app: usize,
}

struct Histories {
    channels: HashMap<ChannelKey, Arc<Slot>>,
    /// Each app's slots, oldest first (forgotten ones are skipped and swept out).
    per_app: HashMap<AppId, VecDeque<Arc<Slot>>>,
    /// The key of `fresh_epoch`; replaced when a history with events ends.
    epoch_key: RandomState,
    last_sweep: Instant,
    /// Slots evicted because their app had too many.
    evicted_slots: u64,
}

/// One channel's history and its marks in the budget.
struct Slot {
    key: ChannelKey,
    marks: Marks,
    state: Mutex<HistorySlot>,
}

struct HistorySlot {
    /// Set when the slot was removed from the map: whoever still holds it looks again.
    forgotten: bool,
    history: ChannelHistory,
}

impl Budgeted for Slot {
    fn marks(&self) -> &Marks {
        &self.marks
    }
}

impl Histories {
    /// The epoch a history of this channel starts in: 12 characters of `[0-9a-f]`, safe to
    /// splice into JSON unescaped.
    fn fresh_epoch(&self, key: &ChannelKey) -> String {
        format!("{:012x}", self.epoch_key.hash_one(key) >> 16)
    }

    /// Called for every history that ends: one with events in its fresh epoch would hand that
    /// epoch out again with serials restarting, so the key changes.
    fn ended(&mut self, key: &ChannelKey, history: &ChannelHistory) {
        if history.latest() > 0 && history.epoch() == self.fresh_epoch(key) {
            self.epoch_key = RandomState::new();
        }
    }
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
        Self::with_limits(sink, Clock::system(), HistoryLimits::default())
    }

    /// A broker whose history ages by `clock` (the conformance suite moves it by hand).
    pub fn with_clock(sink: Arc<dyn DeliverySink>, clock: Clock) -> Self {
        Self::with_limits(sink, clock, HistoryLimits::default())
    }

    pub fn with_limits(sink: Arc<dyn DeliverySink>, clock: Clock, limits: HistoryLimits) -> Self {
        let now = clock.now();
        Self {
            sink,
            clock,
            presence: Mutex::new(HashMap::new()),
            histories: Mutex::new(Histories {
                channels: HashMap::new(),
                per_app: HashMap::new(),
                epoch_key: RandomState::new(),
                last_sweep: now,
                evicted_slots: 0,
            }),
            budget: Mutex::new(Budget::new(limits.max_bytes)),
            max_channels_per_app: limits.max_channels_per_app,
        }
    }

    /// Runs `f` on the channel's history under the channel's lock. A channel without a slot
    /// gets one when `create` (a publication); otherwise the answer is `Err` with the epoch
    /// its history would start in. Frames the window drops meanwhile are given back to the
    /// budget.
    fn with_slot<R>(
        &self,
        key: &ChannelKey,
        now: Instant,
        create: bool,
        f: impl FnOnce(&Arc<Slot>, &mut ChannelHistory) -> R,
    ) -> Result<R, String> {
        loop {
            let slot = {
                let mut histories = self.histories.lock().expect("history lock poisoned");
                if now.saturating_duration_since(histories.last_sweep) >= SWEEP_EVERY {
                    histories.last_sweep = now;
                    self.forget_idle(&mut histories, now);
                }
                match histories.channels.get(key) {
                    Some(slot) => slot.clone(),
                    None if create => self.new_slot(&mut histories, key, now),
                    None => return Err(histories.fresh_epoch(key)),
                }
            };
            let mut state = slot.state.lock().expect("channel history lock poisoned");
            if state.forgotten {
                continue;
            }
            let result = f(&slot, &mut state.history);
            if state.history.has_removed() {
                let mut budget = self.budget.lock().expect("budget lock poisoned");
                budget.discharge(&key.0, &slot, state.history.take_removed());
            }
            return Ok(result);
        }
    }

    /// A slot for the channel, in its fresh epoch; past the app's channel cap the app's
    /// oldest slot that is not in use is evicted first.
    fn new_slot(&self, histories: &mut Histories, key: &ChannelKey, now: Instant) -> Arc<Slot> {
        let app = &key.0;
        let count = histories.per_app.get(app).map_or(0, VecDeque::len);
        if count >= self.max_channels_per_app {
            self.evict_oldest_slot(histories, app);
        }
        let slot = Arc::new(Slot {
            key: key.clone(),
            marks: Marks::default(),
            state: Mutex::new(HistorySlot {
                forgotten: false,
                history: ChannelHistory::new(histories.fresh_epoch(key), now),
            }),
        });
        histories.channels.insert(key.clone(), slot.clone());
        histories
            .per_app
            .entry(app.clone())
            .or_default()
            .push_back(slot.clone());
        slot
    }

    fn evict_oldest_slot(&self, histories: &mut Histories, app: &AppId) {
        loop {
            let Some(slots) = histories.per_app.get_mut(app) else {
                return;
            };
            // A slot whose lock is held is in use: the next oldest goes instead.
            let Some(index) = slots.iter().position(|slot| slot.state.try_lock().is_ok()) else {
                return;
            };
            let Some(slot) = slots.remove(index) else {
                return;
            };
            let mut state = slot.state.lock().expect("channel history lock poisoned");
            if state.forgotten {
                // The sweep forgot it while it was in use: only its place in the order was left.
                continue;
            }
            state.forgotten = true;
            state.history.remove_all();
            let mut budget = self.budget.lock().expect("budget lock poisoned");
            budget.discharge(app, &slot, state.history.take_removed());
            drop(budget);
            histories.channels.remove(&slot.key);
            histories.ended(&slot.key, &state.history);
            histories.evicted_slots += 1;
            return;
        }
    }

    /// Drops the histories that may be forgotten (giving back what their windows dropped). A
    /// channel whose lock is held is in use: kept.
    fn forget_idle(&self, histories: &mut Histories, now: Instant) {
        let mut ended = Vec::new();
        let mut budget = self.budget.lock().expect("budget lock poisoned");
        histories
            .channels
            .retain(|key, slot| match slot.state.try_lock() {
                Ok(mut state) => {
                    let forget = state
                        .history
                        .is_forgettable(now, FORGET_IDLE_CHANNELS_AFTER);
                    budget.discharge(&key.0, slot, state.history.take_removed());
                    state.forgotten = forget;
                    if forget && state.history.latest() > 0 {
                        ended.push((key.clone(), state.history.epoch().to_owned()));
                    }
                    !forget
                }
                Err(TryLockError::WouldBlock) => true,
                Err(TryLockError::Poisoned(_)) => false,
            });
        drop(budget);
        for (key, epoch) in ended {
            if epoch == histories.fresh_epoch(&key) {
                histories.epoch_key = RandomState::new();
            }
        }
        for slots in histories.per_app.values_mut() {
            slots.retain(|slot| slot.state.try_lock().map_or(true, |state| !state.forgotten));
        }
        histories.per_app.retain(|_, slots| !slots.is_empty());
    }
}

/// The span of one publication's delivery to this node's subscribers, one however many they
/// are (the hub records their number): a child of the publish, as `Redis`'s deliveries are
/// of theirs. Disabled, so free, unless traces are on.
fn deliver_span(publication: &Publication) -> tracing::Span {
    tracing::debug_span!(
        "broker.deliver",
        otel.kind = "consumer",
        app_id = %publication.app,
        subscribers = tracing::field::Empty,
    )
}

#[async_trait]
impl Broker for Local {
    async fn publish(&self, mut publication: Publication) -> Result<(), BrokerError> {
        let Some(window) = publication.history else {
            deliver_span(&publication).in_scope(|| self.sink.deliver(&publication));
            return Ok(());
        };
        let now = self.clock.now();
        let key = (publication.app.clone(), publication.channel.clone());
        let elsewhere = self.with_slot(&key, now, true, |slot, history| {
            let (serial, stamped) = history.append(&publication.frame, window, now);
            let bytes = stamped.len();
            publication.frame = stamped;
            publication.serial = Some(serial);
            // Delivered under the channel's lock, so no later serial overtakes this one.
            deliver_span(&publication).in_scope(|| self.sink.deliver(&publication));
            let mut budget = self.budget.lock().expect("budget lock poisoned");
            budget.discharge(&key.0, slot, history.take_removed());
            let mut evictions = budget.charge(&key.0, window.app_max_bytes, slot, serial, bytes);
            drop(budget);
            evictions.retain(|eviction| {
                let own = Arc::ptr_eq(&eviction.slot, slot);
                if own {
                    history.evict_through(eviction.serial);
                }
                !own
            });
            evictions
        });
        // Other channels' evictions once this channel's lock is released (one at a time).
        for Eviction { slot, serial } in elsewhere.unwrap_or_default() {
            let mut state = slot.state.lock().expect("channel history lock poisoned");
            state.history.evict_through(serial);
        }
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
        let key = (app.clone(), channel.clone());
        let read = self.with_slot(&key, now, false, |_, history| {
            history.read(since_serial, epoch, now)
        });
        // No slot: the channel reads as a history just started in its fresh epoch.
        Ok(read
            .unwrap_or_else(|fresh| ChannelHistory::new(fresh, now).read(since_serial, epoch, now)))
    }

    async fn position(&self, app: &AppId, channel: &ChannelName) -> Result<Position, BrokerError> {
        let now = self.clock.now();
        let key = (app.clone(), channel.clone());
        let position = self.with_slot(&key, now, false, |_, history| {
            history.touch(now);
            Position {
                epoch: history.epoch().to_owned(),
                serial: history.latest(),
            }
        });
        Ok(position.unwrap_or_else(|epoch| Position { epoch, serial: 0 }))
    }

    fn history_usage(&self) -> HistoryUsage {
        let usage = self.budget.lock().expect("budget lock poisoned").usage();
        let histories = self.histories.lock().expect("history lock poisoned");
        HistoryUsage {
            bytes: usage.bytes,
            evictions: usage.evictions,
            channels: histories.channels.len() as u64,
            evicted_channels: histories.evicted_slots,
        }
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
