//! How many Pusher HTTP API requests one app may have under way on this node at once. A
//! request takes a permit once authenticated (an unsigned request never holds a tenant's
//! slot) and gives it back when the permit drops: when the handler returns, or when its
//! future is dropped because the client went away.
//!
//! The table holds an entry only for an app with a request in flight (the last permit removes
//! it), so it is bounded by the requests the server is serving, not by anything a client names.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use protocol::names::AppId;

/// Each app's requests in flight; an app with none has no entry.
type Table = Arc<Mutex<HashMap<AppId, usize>>>;

/// Per-app counts of requests in flight, each at most `per_app`.
pub(crate) struct ApiInFlight {
    /// 0: no limit.
    per_app: usize,
    in_flight: Table,
}

/// One of an app's in-flight slots; dropping it gives the slot back.
pub(crate) struct InFlightPermit {
    /// `None` when the limit is off: nothing to give back.
    slot: Option<(Table, AppId)>,
}

impl ApiInFlight {
    /// At most `per_app` requests in flight per app; 0 turns the limit off.
    pub(crate) fn new(per_app: usize) -> Self {
        Self {
            per_app,
            in_flight: Arc::default(),
        }
    }

    /// The most requests one app may have in flight (0: no limit).
    pub(crate) fn per_app(&self) -> usize {
        self.per_app
    }

    /// Takes one of the app's slots, at once; `None`: the app has `per_app` in flight already.
    pub(crate) fn try_acquire(&self, app: &AppId) -> Option<InFlightPermit> {
        if self.per_app == 0 {
            return Some(InFlightPermit { slot: None });
        }
        let mut table = lock(&self.in_flight);
        let count = table.entry(app.clone()).or_insert(0);
        if *count >= self.per_app {
            return None;
        }
        *count += 1;
        Some(InFlightPermit {
            slot: Some((self.in_flight.clone(), app.clone())),
        })
    }

    /// The app's requests in flight now.
    #[cfg(test)]
    fn in_flight(&self, app: &AppId) -> usize {
        lock(&self.in_flight).get(app).copied().unwrap_or(0)
    }

    /// Apps with a request in flight now.
    #[cfg(test)]
    fn tracked(&self) -> usize {
        lock(&self.in_flight).len()
    }
}

impl Drop for InFlightPermit {
    fn drop(&mut self) {
        let Some((in_flight, app)) = self.slot.take() else {
            return;
        };
        let mut table = lock(&in_flight);
        if let Some(count) = table.get_mut(&app) {
            *count -= 1;
            if *count == 0 {
                table.remove(&app);
            }
        }
    }
}

/// A std mutex: it is held for one map update, never across an await.
fn lock(table: &Mutex<HashMap<AppId, usize>>) -> std::sync::MutexGuard<'_, HashMap<AppId, usize>> {
    table
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use futures_util::FutureExt;

    use super::*;

    fn app(id: &str) -> AppId {
        AppId::parse(id).unwrap()
    }

    #[test]
    fn an_app_at_its_limit_is_refused_and_another_app_is_not() {
        let limit = ApiInFlight::new(2);
        let held: Vec<_> = (0..2).map(|_| limit.try_acquire(&app("a"))).collect();
        assert!(held.iter().all(Option::is_some));
        assert!(limit.try_acquire(&app("a")).is_none(), "a third is refused");
        let other = limit.try_acquire(&app("b"));
        assert!(other.is_some(), "b has slots of its own");
        assert_eq!(limit.in_flight(&app("a")), 2);
        assert_eq!(limit.in_flight(&app("b")), 1);
    }

    #[test]
    fn permits_come_back_on_drop_and_idle_apps_leave_the_table() {
        let limit = ApiInFlight::new(2);
        let first = limit.try_acquire(&app("a")).unwrap();
        let second = limit.try_acquire(&app("a")).unwrap();
        assert!(limit.try_acquire(&app("a")).is_none());
        drop(first);
        let third = limit.try_acquire(&app("a"));
        assert!(third.is_some(), "the dropped permit's slot is free again");
        drop((second, third));
        assert_eq!(limit.in_flight(&app("a")), 0);
        assert_eq!(
            limit.tracked(),
            0,
            "no entry is kept for an app with nothing in flight"
        );
    }

    #[test]
    fn a_cancelled_request_gives_its_permit_back() {
        let limit = ApiInFlight::new(1);
        // A handler that took its permit and then waits forever (a slow broker, say); the
        // client goes away, so its future is polled once and dropped.
        let handler = async {
            let _permit = limit.try_acquire(&app("a")).expect("the first is admitted");
            std::future::pending::<()>().await;
        };
        let mut handler = Box::pin(handler);
        assert!(
            (&mut handler).now_or_never().is_none(),
            "the handler is mid-way"
        );
        assert_eq!(
            limit.in_flight(&app("a")),
            1,
            "it holds the permit while pending"
        );
        assert!(limit.try_acquire(&app("a")).is_none());
        drop(handler);
        assert_eq!(limit.in_flight(&app("a")), 0);
        assert!(limit.try_acquire(&app("a")).is_some());
    }

    #[test]
    fn zero_turns_the_limit_off() {
        let limit = ApiInFlight::new(0);
        let held: Vec<_> = (0..1000).map(|_| limit.try_acquire(&app("a"))).collect();
        assert!(held.iter().all(Option::is_some));
        assert_eq!(limit.tracked(), 0);
    }
}
