//! A slot holding one value, where the newest wins: a producer that is faster than its consumer
//! replaces the value not yet taken (counted as dropped) instead of queueing it, so memory and
//! latency stay bounded whatever the speeds.

use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Duration;

/// How many values went in, were taken and were replaced before being taken.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SlotCounts {
    pub put: u64,
    pub taken: u64,
    pub dropped: u64,
}

struct State<T> {
    value: Option<T>,
    counts: SlotCounts,
    closed: bool,
}

pub struct LatestSlot<T> {
    state: Mutex<State<T>>,
    filled: Condvar,
}

impl<T> Default for LatestSlot<T> {
    fn default() -> Self {
        LatestSlot {
            state: Mutex::new(State {
                value: None,
                counts: SlotCounts::default(),
                closed: false,
            }),
            filled: Condvar::new(),
        }
    }
}

impl<T> LatestSlot<T> {
    fn lock(&self) -> MutexGuard<'_, State<T>> {
        // A panic elsewhere while holding the lock leaves a valid state: keep using it.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Puts `value` in place of any value not yet taken; `false` once closed (the value is dropped).
    pub fn put(&self, value: T) -> bool {
        let mut state = self.lock();
        if state.closed {
            return false;
        }
        state.counts.put += 1;
        if state.value.replace(value).is_some() {
            state.counts.dropped += 1;
        }
        self.filled.notify_all();
        true
    }

    /// The value, if one is waiting.
    pub fn try_take(&self) -> Option<T> {
        let mut state = self.lock();
        let value = state.value.take();
        if value.is_some() {
            state.counts.taken += 1;
        }
        value
    }

    /// Waits up to `timeout` for a value; `None` on time-out or once closed and empty.
    pub fn take_timeout(&self, timeout: Duration) -> Option<T> {
        let state = self.lock();
        let (mut state, _) = self
            .filled
            .wait_timeout_while(state, timeout, |s| s.value.is_none() && !s.closed)
            .unwrap_or_else(|e| e.into_inner());
        let value = state.value.take();
        if value.is_some() {
            state.counts.taken += 1;
        }
        value
    }

    /// A value is waiting.
    pub fn is_filled(&self) -> bool {
        self.lock().value.is_some()
    }

    /// No more values will be put; a waiting value can still be taken.
    pub fn close(&self) {
        self.lock().closed = true;
        self.filled.notify_all();
    }

    pub fn is_closed(&self) -> bool {
        self.lock().closed
    }

    pub fn counts(&self) -> SlotCounts {
        self.lock().counts
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn a_new_value_replaces_the_one_not_taken() {
        let slot = LatestSlot::default();
        assert!(slot.put(1) && slot.put(2) && slot.put(3));
        assert_eq!(slot.try_take(), Some(3));
        assert_eq!(slot.try_take(), None);
        let counts = slot.counts();
        assert_eq!((counts.put, counts.taken, counts.dropped), (3, 1, 2));
        slot.close();
        assert!(!slot.put(4));
        assert_eq!(slot.take_timeout(Duration::from_secs(5)), None);
    }

    #[test]
    fn a_slow_consumer_sees_increasing_values_and_the_last_one() {
        let slot = Arc::new(LatestSlot::default());
        let producer = {
            let slot = slot.clone();
            std::thread::spawn(move || {
                for i in 0..200u32 {
                    slot.put(i);
                    std::thread::sleep(Duration::from_micros(200));
                }
                slot.close();
            })
        };
        let mut seen = Vec::new();
        while let Some(v) = slot.take_timeout(Duration::from_secs(10)) {
            seen.push(v);
            std::thread::sleep(Duration::from_millis(5));
        }
        producer.join().unwrap();
        assert!(seen.windows(2).all(|w| w[0] < w[1]), "{seen:?}");
        assert_eq!(seen.last(), Some(&199), "the newest value is never lost");
        let counts = slot.counts();
        assert_eq!(counts.taken, seen.len() as u64);
        assert_eq!(counts.put, counts.taken + counts.dropped);
        assert!(counts.dropped > 100, "{counts:?}");
    }
}
