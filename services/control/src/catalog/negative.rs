//! A bounded, expiring set of names the database does not hold, so a flood of unknown keys or
//! app ids costs one query per name, not one per request.

use std::collections::HashMap;
use std::hash::Hash;
use std::time::{Duration, Instant};

/// Remembers misses for `ttl`, at most `capacity` of them. Past the capacity, expired entries
/// are dropped first; if all are fresh the new miss is simply not remembered (memory stays
/// bounded; the name costs a query again next time).
pub struct NegativeCache<K> {
    entries: HashMap<K, Instant>,
    capacity: usize,
    ttl: Duration,
}

impl<K: Eq + Hash> NegativeCache<K> {
    pub fn new(capacity: usize, ttl: Duration) -> Self {
        Self {
            entries: HashMap::new(),
            capacity,
            ttl,
        }
    }

    pub fn contains(&self, name: &K, now: Instant) -> bool {
        self.entries
            .get(name)
            .is_some_and(|since| now.saturating_duration_since(*since) < self.ttl)
    }

    pub fn insert(&mut self, name: K, now: Instant) {
        if self.entries.len() >= self.capacity && !self.entries.contains_key(&name) {
            let ttl = self.ttl;
            self.entries
                .retain(|_, since| now.saturating_duration_since(*since) < ttl);
            if self.entries.len() >= self.capacity {
                return;
            }
        }
        self.entries.insert(name, now);
    }

    /// The name exists now (a NOTIFY said so).
    pub fn remove(&mut self, name: &K) {
        self.entries.remove(name);
    }

    /// Forgets every miss: notifications may have been lost.
    pub fn clear(&mut self) {
        self.entries.clear();
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn misses_expire_and_the_set_never_outgrows_its_capacity() {
        let start = Instant::now();
        let mut cache = NegativeCache::new(2, Duration::from_secs(10));
        cache.insert("a", start);
        cache.insert("b", start);
        cache.insert("c", start);
        assert_eq!(cache.len(), 2, "full of fresh misses: c is not remembered");
        assert!(cache.contains(&"a", start) && !cache.contains(&"c", start));
        let later = start + Duration::from_secs(11);
        assert!(!cache.contains(&"a", later), "expired");
        cache.insert("c", later);
        assert!(cache.contains(&"c", later));
        assert_eq!(cache.len(), 1, "expired entries made room");
        cache.remove(&"c");
        assert!(!cache.contains(&"c", later));
    }
}
