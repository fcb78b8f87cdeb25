//! The detached sessions an edge holds, by their framing's id (our SDK's: the socket id;
//! pusher-js's xhr: `{key}/{server}/{session}`). Growth is bounded where sessions are made:
//! the creation limits per address and app, and probation, which ends unused sessions.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::hash::Hash;
use std::sync::{Arc, Mutex};

pub(crate) struct Registry<Id, Session> {
    sessions: Mutex<HashMap<Id, Arc<Session>>>,
}

impl<Id, Session> Default for Registry<Id, Session> {
    fn default() -> Self {
        Self {
            sessions: Mutex::new(HashMap::new()),
        }
    }
}

impl<Id: Eq + Hash, Session> Registry<Id, Session> {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Id, Arc<Session>>> {
        self.sessions
            .lock()
            .expect("session registry lock poisoned")
    }

    pub(crate) fn get(&self, id: &Id) -> Option<Arc<Session>> {
        self.lock().get(id).cloned()
    }

    /// Holds `session` under `id`, in place of any session there (a rebuild replaces the
    /// incarnation it stopped).
    pub(crate) fn insert(&self, id: Id, session: Arc<Session>) {
        self.lock().insert(id, session);
    }

    /// The session under `id`, made by `make` if there is none (under the lock, so two
    /// requests opening the same id get one session). `true` if it was made now.
    pub(crate) fn get_or_insert_with(
        &self,
        id: Id,
        make: impl FnOnce() -> Arc<Session>,
    ) -> (Arc<Session>, bool) {
        match self.lock().entry(id) {
            Entry::Occupied(held) => (held.get().clone(), false),
            Entry::Vacant(vacant) => (vacant.insert(make()).clone(), true),
        }
    }

    /// Forgets `session` if it is still the one under `id` (not a successor).
    pub(crate) fn remove(&self, id: &Id, session: &Arc<Session>) {
        let mut sessions = self.lock();
        if sessions
            .get(id)
            .is_some_and(|held| Arc::ptr_eq(held, session))
        {
            sessions.remove(id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_is_forgotten_only_by_itself() {
        let registry = Registry::default();
        let first = Arc::new(1);
        let (held, made) = registry.get_or_insert_with("id", || first.clone());
        assert!(made && Arc::ptr_eq(&held, &first));
        let (held, made) = registry.get_or_insert_with("id", || Arc::new(2));
        assert!(!made && Arc::ptr_eq(&held, &first));
        let successor = Arc::new(3);
        registry.insert("id", successor.clone());
        registry.remove(&"id", &first);
        assert!(
            registry
                .get(&"id")
                .is_some_and(|held| Arc::ptr_eq(&held, &successor))
        );
        registry.remove(&"id", &successor);
        assert!(registry.get(&"id").is_none());
    }
}
