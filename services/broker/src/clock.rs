//! Where a broker reads the time: the system's monotonic clock, or a hand-moved one so the
//! conformance suite can age history without sleeping.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Default)]
pub struct Clock {
    /// `None`: the system clock.
    manual: Option<Arc<Mutex<Instant>>>,
}

impl Clock {
    pub fn system() -> Self {
        Self::default()
    }

    /// A clock that stands still until `advance` moves it.
    pub fn manual() -> Self {
        Self {
            manual: Some(Arc::new(Mutex::new(Instant::now()))),
        }
    }

    pub fn now(&self) -> Instant {
        match &self.manual {
            Some(now) => *now.lock().expect("clock lock poisoned"),
            None => Instant::now(),
        }
    }

    /// Moves a manual clock forward (and every clone of it); the system clock cannot be moved.
    pub fn advance(&self, by: Duration) {
        let manual = self
            .manual
            .as_ref()
            .expect("only a manual clock can be advanced");
        *manual.lock().expect("clock lock poisoned") += by;
    }
}
