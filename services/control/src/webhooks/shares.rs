//! Each app's share of the queue between the edge and the intake: an app may have at most
//! `per_app` events queued, so one app's flood fills its share, not the whole queue, and the
//! other apps' events still get in. The map holds only apps with events queued.

use std::collections::HashMap;
use std::sync::Mutex;

use protocol::names::AppId;

pub(crate) struct QueueShares {
    per_app: usize,
    queued: Mutex<HashMap<AppId, usize>>,
}

impl QueueShares {
    pub(crate) fn new(per_app: usize) -> Self {
        Self {
            per_app: per_app.max(1),
            queued: Mutex::new(HashMap::new()),
        }
    }

    /// Counts one more queued event for the app; false (nothing counted) when its share is full.
    pub(crate) fn try_take(&self, app: &AppId) -> bool {
        let mut queued = self.queued.lock().expect("queue shares lock poisoned");
        let count = queued.entry(app.clone()).or_default();
        if *count >= self.per_app {
            return false;
        }
        *count += 1;
        true
    }

    /// One of the app's events left the queue.
    pub(crate) fn give_back(&self, app: &AppId) {
        let mut queued = self.queued.lock().expect("queue shares lock poisoned");
        if let Some(count) = queued.get_mut(app) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                queued.remove(app);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_app_takes_at_most_its_share_and_others_still_get_in() {
        let shares = QueueShares::new(2);
        let (flood, other) = (AppId::parse("1").unwrap(), AppId::parse("2").unwrap());
        assert!(shares.try_take(&flood));
        assert!(shares.try_take(&flood));
        assert!(!shares.try_take(&flood));
        assert!(shares.try_take(&other));
        shares.give_back(&flood);
        assert!(shares.try_take(&flood));
        for _ in 0..5 {
            shares.give_back(&other);
        }
        assert!(shares.queued.lock().unwrap().get(&other).is_none());
    }
}
