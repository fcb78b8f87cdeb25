//! The refusal log: each app's most recent refusals on this node, in a bounded ring.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use protocol::names::AppId;
use tenancy::Refusal;

/// Refusals kept per app (the oldest goes first).
pub const MAX_REFUSALS_PER_APP: usize = 100;
/// Apps with a ring; past it the app written to longest ago loses its ring.
pub const MAX_APPS_WITH_REFUSALS: usize = 10_000;

#[derive(Default)]
pub(crate) struct RefusalLog {
    rings: Mutex<Rings>,
}

#[derive(Default)]
struct Rings {
    by_app: HashMap<AppId, Ring>,
    /// Increases with every write, so the least recently written ring can be found.
    writes: u64,
}

struct Ring {
    last_write: u64,
    refusals: VecDeque<Refusal>,
}

impl RefusalLog {
    pub(crate) fn push(&self, app: &AppId, refusal: Refusal) {
        let mut rings = self.rings.lock().expect("refusal log lock poisoned");
        rings.writes += 1;
        let write = rings.writes;
        if !rings.by_app.contains_key(app) && rings.by_app.len() >= MAX_APPS_WITH_REFUSALS {
            // Only when a new app arrives at the bound: one scan, then the map stays full.
            let oldest = rings
                .by_app
                .iter()
                .min_by_key(|(_, ring)| ring.last_write)
                .map(|(app, _)| app.clone());
            if let Some(oldest) = oldest {
                rings.by_app.remove(&oldest);
            }
        }
        let ring = rings.by_app.entry(app.clone()).or_insert_with(|| Ring {
            last_write: write,
            refusals: VecDeque::new(),
        });
        ring.last_write = write;
        if ring.refusals.len() >= MAX_REFUSALS_PER_APP {
            ring.refusals.pop_front();
        }
        ring.refusals.push_back(refusal);
    }

    /// The app's refusals, oldest first.
    pub(crate) fn of(&self, app: &AppId) -> Vec<Refusal> {
        let rings = self.rings.lock().expect("refusal log lock poisoned");
        rings
            .by_app
            .get(app)
            .map(|ring| ring.refusals.iter().cloned().collect())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refusal(n: u64) -> Refusal {
        Refusal {
            time_ms: n,
            source: "api",
            code: None,
            status: Some(401),
            reason: format!("refusal {n}"),
            socket_id: None,
            channel: None,
        }
    }

    #[test]
    fn each_app_keeps_its_newest_refusals_only() {
        let log = RefusalLog::default();
        let (a, b) = (AppId::parse("a").unwrap(), AppId::parse("b").unwrap());
        for n in 0..(MAX_REFUSALS_PER_APP as u64 + 5) {
            log.push(&a, refusal(n));
        }
        log.push(&b, refusal(7));
        let of_a = log.of(&a);
        assert_eq!(of_a.len(), MAX_REFUSALS_PER_APP);
        assert_eq!(of_a[0].time_ms, 5);
        assert_eq!(log.of(&b), vec![refusal(7)]);
        assert!(log.of(&AppId::parse("c").unwrap()).is_empty());
    }

    #[test]
    fn the_number_of_apps_is_bounded() {
        let log = RefusalLog::default();
        let first = AppId::parse("first").unwrap();
        log.push(&first, refusal(0));
        for n in 0..MAX_APPS_WITH_REFUSALS {
            log.push(&AppId::parse(&format!("app{n}")).unwrap(), refusal(1));
        }
        assert!(log.of(&first).is_empty(), "the oldest app's ring went");
        assert_eq!(
            log.rings.lock().unwrap().by_app.len(),
            MAX_APPS_WITH_REFUSALS
        );
    }
}
