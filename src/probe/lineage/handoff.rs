//! The hand-off of a new thread's node from its creator to the thread itself, where the platform
//! reports creation as two events instead of a call leakcheck wraps: macOS's introspection hook
//! sees the creation on the creating thread and the start on the new one, with only the new
//! thread's `pthread_t` in common (see [`super::events`]).
//!
//! A fixed table of atomic (key, value) pairs: no allocation and no lock, so that it is safe
//! wherever the platform calls its hook. A key is the new thread's handle, a value its node as a
//! raw pointer (both non-zero). Each key has a home slot (a multiplicative hash: handles are
//! page-aligned, so their low bits say nothing) and lives within [`WINDOW`] slots of it, so a
//! lookup that misses (a thread the creator never handed over) costs at most [`WINDOW`] loads.
//! Entries live only while a thread is being created (from the creator's event to the new
//! thread's), so the table holds the creations in flight, not the live threads.
//!
//! The caller guarantees what the table does not check: a key is in the table at most once, and
//! its [`Handoff::take`] happens after its [`Handoff::put`] returned (the platform orders the
//! creator's event before the new thread's, and thread creation synchronizes the two threads).
//! Different keys may be put and taken concurrently from any threads.

use std::sync::atomic::{AtomicUsize, Ordering};

/// How many slots from its home a key may sit: a put fails beyond it, a lookup stops there.
pub(crate) const WINDOW: usize = 32;

/// One entry; free while `key` is 0.
struct Slot {
    key: AtomicUsize,
    value: AtomicUsize,
}

/// A table of at most `SLOTS` creations in flight (see the module docs).
pub(crate) struct Handoff<const SLOTS: usize> {
    slots: [Slot; SLOTS],
}

impl<const SLOTS: usize> Handoff<SLOTS> {
    /// An empty table, for a `static`.
    pub(crate) const fn new() -> Self {
        Handoff {
            slots: [const {
                Slot {
                    key: AtomicUsize::new(0),
                    value: AtomicUsize::new(0),
                }
            }; SLOTS],
        }
    }

    /// The slots `key` may occupy, home first.
    fn window(&self, key: usize) -> impl Iterator<Item = &Slot> {
        let home = ((key as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 32) as usize % SLOTS;
        (0..WINDOW.min(SLOTS)).map(move |step| &self.slots[(home + step) % SLOTS])
    }

    /// Hands `value` over under `key` (both non-zero). `false` if the key's window is full: the
    /// value stays the caller's.
    pub(crate) fn put(&self, key: usize, value: usize) -> bool {
        debug_assert!(key != 0 && value != 0);
        for slot in self.window(key) {
            if slot
                .key
                .compare_exchange(0, key, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
            {
                slot.value.store(value, Ordering::Release);
                return true;
            }
        }
        false
    }

    /// Takes the value handed over under `key`, if any, and frees its slot.
    pub(crate) fn take(&self, key: usize) -> Option<usize> {
        for slot in self.window(key) {
            if slot.key.load(Ordering::Acquire) == key {
                let value = slot.value.swap(0, Ordering::Acquire);
                // Frees the slot after its value was read: a put that claims it next writes
                // its own value after this.
                slot.key.store(0, Ordering::Release);
                return (value != 0).then_some(value);
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    /// Page-aligned handles, as `pthread_t`s are: the hash must spread them.
    fn handle(n: usize) -> usize {
        0x7000_0000_0000 + n * 0x8_1000
    }

    /// A value put under a key is taken once, and only under that key.
    #[test]
    fn put_then_take_once() {
        let table = Handoff::<64>::new();
        assert!(table.put(handle(1), 11));
        assert_eq!(table.take(handle(2)), None);
        assert_eq!(table.take(handle(1)), Some(11));
        assert_eq!(table.take(handle(1)), None);
    }

    /// Hundreds of creations in flight at once in a table of 1024 (macOS's size) all fit, and
    /// each is taken back with its own value; the freed slots serve again.
    #[test]
    fn many_in_flight() {
        let table = Handoff::<1024>::new();
        for round in 0..3 {
            for n in 0..400 {
                assert!(table.put(handle(n), n + 1 + round), "handle {n} did not fit");
            }
            for n in (0..400).rev() {
                assert_eq!(table.take(handle(n)), Some(n + 1 + round));
            }
        }
        assert!(table
            .slots
            .iter()
            .all(|slot| slot.key.load(Ordering::Relaxed) == 0));
    }

    /// A full window refuses a put (the caller keeps its value) instead of looking further.
    #[test]
    fn full_window_refuses() {
        let table = Handoff::<{ WINDOW }>::new();
        for n in 0..WINDOW {
            assert!(table.put(handle(n), 1));
        }
        assert!(!table.put(handle(WINDOW), 1));
        assert_eq!(table.take(handle(WINDOW)), None);
        assert_eq!(table.take(handle(3)), Some(1));
        assert!(table.put(handle(WINDOW), 2));
        assert_eq!(table.take(handle(WINDOW)), Some(2));
    }

    /// Threads putting and taking their own keys at once never lose or swap a value.
    #[test]
    fn concurrent_creations() {
        let table = Arc::new(Handoff::<256>::new());
        let workers: Vec<_> = (0..4)
            .map(|worker| {
                let table = table.clone();
                std::thread::spawn(move || {
                    for round in 0..2000 {
                        let keys: Vec<usize> = (0..8).map(|k| handle(worker * 1000 + k)).collect();
                        for (k, &key) in keys.iter().enumerate() {
                            assert!(table.put(key, round * 10 + k + 1));
                        }
                        for (k, &key) in keys.iter().enumerate() {
                            assert_eq!(table.take(key), Some(round * 10 + k + 1));
                        }
                    }
                })
            })
            .collect();
        for worker in workers {
            worker.join().unwrap();
        }
    }
}
