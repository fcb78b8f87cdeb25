//! The byte budgets of channel history: one per app (its plan's `app_max_bytes`) and one for
//! the node. Past the app's budget its oldest events go first; past the node's, the oldest
//! events of the app that holds the most.
//!
//! Every stored frame is charged once, in publication order, to its app's queue of charges.
//! Its bytes are given back exactly once: by its channel when the window drops it
//! (`discharge`), or here when the budget evicts it (the channel then drops it through
//! `ChannelHistory::evict_through`). Which of the two happened is decided under this
//! budget's lock, with two marks per channel (`Marks`) written only under it. A charge whose
//! frame the window already dropped is stale: popping it costs nothing. Each charge also
//! costs `CHARGE_OVERHEAD` until it is popped, so stale charges count against the budget
//! too and the queues stay bounded.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use protocol::names::AppId;

/// What one queued charge is taken to cost beyond its frame (the charge and the stored
/// entry's bookkeeping).
pub const CHARGE_OVERHEAD: usize = 64;

/// Per channel, written only under the budget's lock: the last serial the window dropped
/// (and gave back) and the last serial the budget evicted.
#[derive(Debug, Default)]
pub struct Marks {
    trimmed_through: AtomicU64,
    evicted_through: AtomicU64,
}

/// A channel's stored state as the budget sees it.
pub trait Budgeted {
    fn marks(&self) -> &Marks;
}

/// What the budget took from a channel: every frame up to and including `serial`.
pub struct Eviction<S> {
    pub slot: Arc<S>,
    pub serial: u64,
}

/// Figures for `/metrics`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BudgetUsage {
    pub bytes: u64,
    pub evictions: u64,
}

pub struct Budget<S> {
    max_bytes: usize,
    bytes: usize,
    evictions: u64,
    apps: HashMap<AppId, AppBudget<S>>,
}

struct AppBudget<S> {
    max_bytes: usize,
    bytes: usize,
    charges: VecDeque<Charge<S>>,
}

struct Charge<S> {
    slot: Arc<S>,
    serial: u64,
    bytes: usize,
}

impl<S: Budgeted> Budget<S> {
    pub fn new(max_bytes: usize) -> Self {
        Self {
            max_bytes,
            bytes: 0,
            evictions: 0,
            apps: HashMap::new(),
        }
    }

    pub fn usage(&self) -> BudgetUsage {
        BudgetUsage {
            bytes: self.bytes as u64,
            evictions: self.evictions,
        }
    }

    /// Bytes the app is charged for now.
    #[cfg(test)]
    pub fn app_bytes(&self, app: &AppId) -> usize {
        self.apps.get(app).map_or(0, |budget| budget.bytes)
    }

    /// Charges a frame just stored in `slot` under `serial`, then evicts until the app and the
    /// node are within their budgets. The caller applies the evictions to the channels
    /// (`ChannelHistory::evict_through`), the one it holds at once, others once it let go.
    pub fn charge(
        &mut self,
        app: &AppId,
        app_max_bytes: usize,
        slot: &Arc<S>,
        serial: u64,
        bytes: usize,
    ) -> Vec<Eviction<S>> {
        let budget = self.apps.entry(app.clone()).or_insert_with(|| AppBudget {
            max_bytes: app_max_bytes,
            bytes: 0,
            charges: VecDeque::new(),
        });
        budget.max_bytes = app_max_bytes;
        budget.charges.push_back(Charge {
            slot: slot.clone(),
            serial,
            bytes,
        });
        budget.bytes += bytes + CHARGE_OVERHEAD;
        self.bytes += bytes + CHARGE_OVERHEAD;
        let mut evictions = Vec::new();
        self.pop_stale(app);
        while self.apps.get(app).is_some_and(|b| b.bytes > b.max_bytes) {
            self.pop_oldest(app, &mut evictions);
        }
        while self.bytes > self.max_bytes {
            let Some(largest) = self.largest_app() else {
                break;
            };
            self.pop_oldest(&largest, &mut evictions);
        }
        evictions
    }

    /// Gives back the frames a channel's window dropped (`ChannelHistory::take_removed`),
    /// except those the budget already evicted.
    pub fn discharge(
        &mut self,
        app: &AppId,
        slot: &S,
        removed: impl Iterator<Item = (u64, usize)>,
    ) {
        let marks = slot.marks();
        let evicted_through = marks.evicted_through.load(Ordering::Relaxed);
        let mut freed = 0;
        let mut through = None;
        for (serial, bytes) in removed {
            if serial > evicted_through {
                freed += bytes;
            }
            through = Some(serial);
        }
        if let Some(through) = through {
            marks.trimmed_through.fetch_max(through, Ordering::Relaxed);
        }
        if let Some(budget) = self.apps.get_mut(app) {
            budget.bytes -= freed;
            self.bytes -= freed;
        }
    }

    fn largest_app(&self) -> Option<AppId> {
        self.apps
            .iter()
            .filter(|(_, budget)| !budget.charges.is_empty())
            .max_by_key(|(_, budget)| budget.bytes)
            .map(|(app, _)| app.clone())
    }

    /// Pops the app's stale charges at the front: nothing to evict, only their overhead.
    fn pop_stale(&mut self, app: &AppId) {
        let Some(budget) = self.apps.get_mut(app) else {
            return;
        };
        while let Some(charge) = budget.charges.front() {
            let trimmed = charge.slot.marks().trimmed_through.load(Ordering::Relaxed);
            if charge.serial > trimmed {
                break;
            }
            budget.charges.pop_front();
            budget.bytes -= CHARGE_OVERHEAD;
            self.bytes -= CHARGE_OVERHEAD;
        }
    }

    /// Pops the app's oldest charge, evicting its frame unless the window already dropped it.
    fn pop_oldest(&mut self, app: &AppId, evictions: &mut Vec<Eviction<S>>) {
        let Some(budget) = self.apps.get_mut(app) else {
            return;
        };
        let Some(charge) = budget.charges.pop_front() else {
            // Nothing queued, so nothing charged: the loop ends here.
            budget.bytes = 0;
            return;
        };
        let marks = charge.slot.marks();
        let mut freed = CHARGE_OVERHEAD;
        if charge.serial > marks.trimmed_through.load(Ordering::Relaxed) {
            freed += charge.bytes;
            marks
                .evicted_through
                .fetch_max(charge.serial, Ordering::Relaxed);
            self.evictions += 1;
            evictions.push(Eviction {
                slot: charge.slot,
                serial: charge.serial,
            });
        }
        budget.bytes -= freed;
        self.bytes -= freed;
        if budget.charges.is_empty() {
            self.apps.remove(app);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Slot(Marks);

    impl Budgeted for Slot {
        fn marks(&self) -> &Marks {
            &self.0
        }
    }

    fn app(id: &str) -> AppId {
        AppId::parse(id).unwrap()
    }

    fn serials(evictions: &[Eviction<Slot>]) -> Vec<u64> {
        evictions.iter().map(|eviction| eviction.serial).collect()
    }

    #[test]
    fn the_app_budget_evicts_its_oldest_frames_first() {
        let mut budget = Budget::new(usize::MAX);
        let (a, b) = (Arc::new(Slot::default()), Arc::new(Slot::default()));
        let limit = 3 * (100 + CHARGE_OVERHEAD);
        assert!(budget.charge(&app("x"), limit, &a, 1, 100).is_empty());
        assert!(budget.charge(&app("x"), limit, &b, 1, 100).is_empty());
        assert!(budget.charge(&app("x"), limit, &a, 2, 100).is_empty());
        let evicted = budget.charge(&app("x"), limit, &b, 2, 100);
        assert_eq!(serials(&evicted), [1]);
        assert!(
            Arc::ptr_eq(&evicted[0].slot, &a),
            "a's serial 1 was the oldest"
        );
        assert_eq!(budget.app_bytes(&app("x")), limit);
        assert_eq!(budget.usage().evictions, 1);
    }

    #[test]
    fn frames_the_window_dropped_are_given_back_once_and_their_charges_are_stale() {
        let mut budget = Budget::new(usize::MAX);
        let slot = Arc::new(Slot::default());
        let limit = 2 * (100 + CHARGE_OVERHEAD);
        budget.charge(&app("x"), limit, &slot, 1, 100);
        budget.charge(&app("x"), limit, &slot, 2, 100);
        budget.discharge(&app("x"), &slot, [(1, 100)].into_iter());
        assert_eq!(budget.app_bytes(&app("x")), 100 + 2 * CHARGE_OVERHEAD);
        let evicted = budget.charge(&app("x"), limit, &slot, 3, 100);
        assert!(
            evicted.is_empty(),
            "the stale charge of 1 went first, for free"
        );
        assert_eq!(budget.app_bytes(&app("x")), limit);
        let evicted = budget.charge(&app("x"), limit, &slot, 4, 100);
        assert_eq!(serials(&evicted), [2]);
        // The window now drops 2 (already evicted) and 3: only 3 is given back.
        budget.discharge(&app("x"), &slot, [(2, 100), (3, 100)].into_iter());
        assert_eq!(budget.app_bytes(&app("x")), 100 + 2 * CHARGE_OVERHEAD);
    }

    #[test]
    fn past_the_node_budget_the_largest_app_gives_way() {
        let frame = 100 + CHARGE_OVERHEAD;
        let mut budget = Budget::new(4 * frame);
        let (quiet, noisy) = (Arc::new(Slot::default()), Arc::new(Slot::default()));
        budget.charge(&app("quiet"), usize::MAX, &quiet, 1, 100);
        for serial in 1..=3 {
            assert!(
                budget
                    .charge(&app("noisy"), usize::MAX, &noisy, serial, 100)
                    .is_empty()
            );
        }
        let evicted = budget.charge(&app("noisy"), usize::MAX, &noisy, 4, 100);
        assert!(
            Arc::ptr_eq(&evicted[0].slot, &noisy),
            "the quiet app keeps its event"
        );
        assert_eq!(serials(&evicted), [1]);
        assert_eq!(budget.app_bytes(&app("quiet")), frame);
        assert_eq!(budget.usage().bytes, 4 * frame as u64);
    }
}
