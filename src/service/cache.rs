//! Caches of work derived from specs, bounded in entries and in bytes.
//!
//! Keys come from requests, so every map hashes with a random key (no chosen
//! set of specs collides), and everything kept is an owned copy: no entry
//! keeps a request buffer alive.

use std::borrow::Borrow;
use std::hash::{Hash, RandomState};
use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use lru::LruCache;

use super::wire::SpecWire;
use keyfilter_core::eval::Matcher;
use keyfilter_core::plan::{Plan, Test};

/// What an entry costs besides the bytes it holds (map slots, headers).
pub(super) const ENTRY_OVERHEAD: usize = 128;

/// Specs larger than this (as received) are not cached by their bytes:
/// keeping them would cost more than parsing them again.
pub(super) const MAX_RECEIVED_SPEC_BYTES: usize = 64 * 1024;

/// One LRU map with a byte budget: entries are evicted, oldest first, until
/// a new one fits; an entry heavier than the whole budget is not kept.
#[derive(Debug)]
pub(super) struct Level<K: Hash + Eq, V> {
    /// Unbounded as a map, bounded by `put`: a bounded `LruCache` reserves
    /// room for all its entries up front (a setting of 100 million entries
    /// took 280 MB before anything was cached).
    entries: LruCache<K, (V, usize), RandomState>,
    max_entries: usize,
    pub(super) bytes: usize,
    max_bytes: usize,
}

impl<K: Hash + Eq, V: Clone> Level<K, V> {
    /// At most `entries` entries weighing `max_bytes` in all.
    pub(super) fn new(entries: NonZeroUsize, max_bytes: usize) -> Self {
        Level {
            entries: LruCache::unbounded_with_hasher(RandomState::new()),
            max_entries: entries.get(),
            bytes: 0,
            max_bytes,
        }
    }

    /// The value kept for `key`, now the most recently used.
    pub(super) fn get<Q>(&mut self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.entries.get(key).map(|(value, _)| value.clone())
    }

    /// Keeps `value` for `key`, counted as `weight` bytes.
    pub(super) fn put(&mut self, key: K, value: V, weight: usize) {
        if weight > self.max_bytes {
            return;
        }
        if let Some((_, (_, old))) = self.entries.pop_entry(&key) {
            self.bytes -= old;
        }
        while self.bytes + weight > self.max_bytes || self.entries.len() >= self.max_entries {
            match self.entries.pop_lru() {
                Some((_, (_, w))) => self.bytes -= w,
                None => break,
            }
        }
        self.entries.put(key, (value, weight));
        self.bytes += weight;
    }

    /// The least recently used key (for tests).
    #[cfg(test)]
    pub(super) fn oldest_key(&self) -> Option<&K> {
        self.entries.peek_lru().map(|(key, _)| key)
    }
}

/// A level of at most `entries` entries and `max_bytes` bytes; `None` (no
/// caching) when either is 0.
pub(super) fn level<K: Hash + Eq, V: Clone>(entries: usize, max_bytes: usize) -> Option<Mutex<Level<K, V>>> {
    let entries = NonZeroUsize::new(entries).filter(|_| max_bytes > 0)?;
    Some(Mutex::new(Level::new(entries, max_bytes)))
}

/// Bytes a plan holds: its values, plus a fixed cost per check and value.
pub(super) fn plan_bytes(plan: &Plan) -> usize {
    plan.leaves()
        .iter()
        .map(|check| {
            // 32 more per check covers a tree's group nodes too (fewer than leaves).
            64 + match &check.test {
                Test::In(values) | Test::NotIn(values) => values.iter().map(|v| v.len() + 32).sum(),
                Test::Eq(v)
                | Test::Ne(v)
                | Test::Lt(v)
                | Test::Le(v)
                | Test::Gt(v)
                | Test::Ge(v)
                | Test::Suffix(v)
                | Test::NotSuffix(v)
                | Test::Contains(v)
                | Test::NotContains(v) => v.len(),
            }
        })
        .sum()
}

/// Matchers of the specs of `Match` calls and `Filter` streams, keyed by the
/// spec's bytes as received: a client that sends the same spec again (a
/// service asking the same question call after call) skips parsing,
/// validation and planning. Bounded by `matcher_cache_entries` and
/// `matcher_cache_bytes`.
#[derive(Debug)]
pub struct MatcherCache {
    level: Option<Mutex<Level<Bytes, Arc<Matcher>>>>,
}

impl MatcherCache {
    /// A cache of at most `entries` matchers and `max_bytes` bytes; 0 disables it.
    pub fn new(entries: usize, max_bytes: usize) -> Self {
        MatcherCache {
            level: level(entries, max_bytes),
        }
    }

    /// The matcher kept for exactly these spec bytes, if any.
    pub fn get(&self, spec: &SpecWire) -> Option<Arc<Matcher>> {
        let level = self.level.as_ref()?;
        if spec.as_bytes().len() > MAX_RECEIVED_SPEC_BYTES {
            return None;
        }
        let hit = level.lock().expect("cache lock poisoned").get(spec.as_bytes());
        crate::service::metrics::matcher_cache(hit.is_some());
        hit
    }

    /// Keeps `matcher`, planned from `plan`, for `spec`'s bytes (copied).
    pub fn put(&self, spec: &SpecWire, plan: &Plan, matcher: Arc<Matcher>) {
        let Some(level) = &self.level else { return };
        let spec = spec.as_bytes();
        if spec.len() > MAX_RECEIVED_SPEC_BYTES {
            return;
        }
        // The matcher holds its own copies of the values (and hash sets of
        // IN values): counted as twice the plan's bytes.
        let weight = spec.len() + 2 * plan_bytes(plan) + ENTRY_OVERHEAD;
        level
            .lock()
            .expect("cache lock poisoned")
            .put(Bytes::copy_from_slice(spec), matcher, weight);
    }

    /// Bytes held (for tests).
    pub fn bytes(&self) -> usize {
        self.level
            .as_ref()
            .map_or(0, |l| l.lock().expect("cache lock poisoned").bytes)
    }
}

/// The spec `field 0 == value`, of arity 1, as received (for the caches' tests).
#[cfg(test)]
pub(super) fn spec(value: &[u8]) -> SpecWire {
    use crate::proto::{FilterSpec, Op, Predicate};
    SpecWire::from_message(&FilterSpec {
        arity: 1,
        predicates: vec![Predicate {
            field: 0,
            op: Op::Eq as i32,
            value: Bytes::copy_from_slice(value),
            values: vec![],
        }],
        expr: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_level_keeps_at_most_its_entries_and_reserves_nothing_for_them() {
        // A billion entries allowed: nothing is reserved for them.
        let mut level: Level<u32, u32> = Level::new(NonZeroUsize::new(1_000_000_000).unwrap(), 1 << 20);
        assert!(level.entries.cap().get() >= 1_000_000_000);
        level.put(1, 1, 1);
        let mut level: Level<u32, u32> = Level::new(NonZeroUsize::new(3).unwrap(), 1 << 20);
        for key in 0..10 {
            level.put(key, key, 1);
            assert!(level.entries.len() <= 3);
        }
        assert_eq!(level.bytes, 3);
        assert_eq!(level.get(&9), Some(9));
        assert_eq!(level.get(&6), None, "the oldest went first");
        // Putting a key again replaces it, without evicting another.
        level.put(9, 90, 2);
        assert_eq!((level.entries.len(), level.bytes, level.get(&9)), (3, 4, Some(90)));
    }
    use keyfilter_core::spec::Limits;

    fn planned(spec: &SpecWire) -> (Plan, Arc<Matcher>) {
        let plan = Plan::new(&spec.parse(&Limits::default()).unwrap());
        let matcher = Arc::new(Matcher::new(&plan));
        (plan, matcher)
    }

    #[test]
    fn a_matcher_is_found_by_exactly_the_spec_bytes_it_was_planned_from() {
        let cache = MatcherCache::new(4, 1 << 20);
        let a = spec(b"tenant-a");
        let (plan, matcher) = planned(&a);
        cache.put(&a, &plan, matcher.clone());
        let hit = cache.get(&spec(b"tenant-a")).expect("same bytes, same matcher");
        assert!(Arc::ptr_eq(&hit, &matcher));
        assert!(cache.get(&spec(b"tenant-b")).is_none());
        // The matcher kept answers for the spec it came from.
        let keys: [&[u8]; 1] = [b"tenant-a"];
        assert!(hit.matches(&keys));
        let other: [&[u8]; 1] = [b"tenant-b"];
        assert!(!hit.matches(&other));
    }

    #[test]
    fn matcher_keys_own_their_bytes_and_the_budget_holds() {
        let budget = 8 * 1024;
        let cache = MatcherCache::new(1000, budget);
        let first = spec(b"0");
        let (plan, matcher) = planned(&first);
        cache.put(&first, &plan, matcher);
        {
            let level = cache.level.as_ref().unwrap().lock().unwrap();
            let key = level.oldest_key().unwrap();
            assert_ne!(key.as_ptr(), first.as_bytes().as_ptr(), "the key borrows the request");
        }
        for i in 0..500u32 {
            let wire = spec(format!("value-{i}").as_bytes());
            let (plan, matcher) = planned(&wire);
            cache.put(&wire, &plan, matcher);
            assert!(cache.bytes() <= budget, "{} bytes held", cache.bytes());
        }
        assert!(cache.get(&spec(b"value-499")).is_some());
        assert!(cache.get(&first).is_none(), "the oldest was evicted");
    }

    #[test]
    fn a_disabled_matcher_cache_remembers_nothing() {
        for cache in [MatcherCache::new(0, 1 << 20), MatcherCache::new(4, 0)] {
            let wire = spec(b"a");
            let (plan, matcher) = planned(&wire);
            cache.put(&wire, &plan, matcher);
            assert!(cache.get(&wire).is_none());
            assert_eq!(cache.bytes(), 0);
        }
    }
}
