//! The one bounded cache of the app: results kept per key up to a budget (a number of entries, or
//! bytes), the oldest dropped first.

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;

pub struct BoundedCache<K, V> {
    entries: HashMap<K, V>,
    /// Oldest first; [`Self::get_recent`] moves a key to the back.
    order: VecDeque<K>,
    size_of: fn(&V) -> usize,
    budget: usize,
    used: usize,
}

impl<K: Eq + Hash + Clone, V> BoundedCache<K, V> {
    /// At most `capacity` entries.
    pub fn with_capacity(capacity: usize) -> Self {
        Self::with_budget(capacity, |_| 1)
    }

    /// At most `budget` in the sum of `size_of` over the entries; the newest entry is kept
    /// however large it is.
    pub fn with_budget(budget: usize, size_of: fn(&V) -> usize) -> Self {
        BoundedCache {
            entries: HashMap::new(),
            order: VecDeque::new(),
            size_of,
            budget,
            used: 0,
        }
    }

    pub fn get(&self, key: &K) -> Option<&V> {
        self.entries.get(key)
    }

    pub fn contains_key(&self, key: &K) -> bool {
        self.entries.contains_key(key)
    }

    /// Like [`Self::get`], and the entry becomes the last to be dropped.
    pub fn get_recent(&mut self, key: &K) -> Option<&V> {
        if self.entries.contains_key(key) {
            self.order.retain(|k| k != key);
            self.order.push_back(key.clone());
        }
        self.entries.get(key)
    }

    pub fn insert(&mut self, key: K, value: V) {
        self.used += (self.size_of)(&value);
        if let Some(old) = self.entries.insert(key.clone(), value) {
            self.used -= (self.size_of)(&old);
            self.order.retain(|k| *k != key);
        }
        self.order.push_back(key);
        while self.used > self.budget && self.order.len() > 1 {
            if let Some(oldest) = self.order.pop_front() {
                self.forget(&oldest);
            }
        }
    }

    pub fn remove(&mut self, key: &K) -> Option<V> {
        self.order.retain(|k| k != key);
        self.forget(key)
    }

    fn forget(&mut self, key: &K) -> Option<V> {
        let old = self.entries.remove(key)?;
        self.used -= (self.size_of)(&old);
        Some(old)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// The sum of `size_of` over the entries.
    pub fn used(&self) -> usize {
        self.used
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn clear(&mut self) {
        self.entries.clear();
        self.order.clear();
        self.used = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_oldest_entries_go_first() {
        let mut cache = BoundedCache::with_capacity(2);
        cache.insert(1, "a");
        cache.insert(2, "b");
        cache.insert(1, "a2");
        cache.insert(3, "c");
        assert_eq!((cache.get(&1), cache.get(&2)), (Some(&"a2"), None));
        assert_eq!(cache.len(), 2);
    }

    #[test]
    fn a_byte_budget_keeps_the_newest_entry_however_large() {
        let mut cache = BoundedCache::with_budget(10, |v: &Vec<u8>| v.len());
        cache.insert("a", vec![0; 4]);
        cache.insert("b", vec![0; 4]);
        cache.get_recent(&"a");
        cache.insert("c", vec![0; 4]);
        assert!(cache.contains_key(&"a") && !cache.contains_key(&"b"));
        cache.insert("huge", vec![0; 100]);
        assert_eq!(cache.len(), 1);
        assert_eq!(cache.remove(&"huge").map(|v| v.len()), Some(100));
        assert!(cache.is_empty());
    }
}
