//! Stopping an evaluation in progress, even inside one key.
//!
//! Most checks cost a few nanoseconds whatever the key, but a substring check
//! reads its whole field: a spec of 10,000 of them over a field of a few
//! megabytes is tens of seconds of work for a *single* key. A caller that
//! evaluates keys in slices can stop between slices; to stop within a key,
//! it runs the evaluation under [`Stop::watch`], and once the flag is raised
//! every substring check on a long field gives up at once (answering "does
//! not hold", a wrong answer the caller throws away: it stopped because
//! nobody waits for the result any more).
//!
//! The flag is found through the current thread rather than passed down:
//! a [`Matcher`](super::Matcher) is shared by every call and stream that uses
//! the same spec, so it cannot hold one caller's flag, and the loops that
//! run checks stay as lean as they are. Only a substring check about to read
//! a long field looks at it, where the look costs nothing next to the read.

use std::cell::RefCell;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// A field at least this long makes a substring check look at the watched
/// flag first: reading it costs tens of nanoseconds or more, so the look
/// (a thread-local read) is lost in it, while shorter fields are bounded by
/// the caller's slices of keys.
pub(super) const LONG_FIELD: usize = 1024;

thread_local! {
    /// The flag of the [`Stop::watch`] running on this thread, if any.
    static WATCHED: RefCell<Option<Arc<AtomicBool>>> = const { RefCell::new(None) };
}

/// A flag that stops evaluations running under [`Stop::watch`]; clones share
/// the flag, so one is raised from wherever the caller gives up.
#[derive(Clone, Debug, Default)]
pub struct Stop(Arc<AtomicBool>);

impl Stop {
    /// Raises the flag: evaluations watching it wind down.
    pub fn request(&self) {
        self.0.store(true, Ordering::Relaxed);
    }

    /// Whether the flag is raised.
    pub fn is_requested(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }

    /// Runs `work` (an evaluation) with this flag watched on this thread:
    /// once it is raised, substring checks on long fields give up, so `work`
    /// ends soon with results that must be discarded.
    pub fn watch<R>(&self, work: impl FnOnce() -> R) -> R {
        /// Puts back the flag watched before, also when `work` panics.
        struct Restore(Option<Arc<AtomicBool>>);
        impl Drop for Restore {
            fn drop(&mut self) {
                WATCHED.with(|watched| *watched.borrow_mut() = self.0.take());
            }
        }
        let _restore = Restore(WATCHED.with(|watched| watched.borrow_mut().replace(self.0.clone())));
        work()
    }
}

/// Whether a check about to read `field` should give up instead: the field
/// is long and the flag watched on this thread is raised.
#[inline(always)]
pub(super) fn gives_up(field: &[u8]) -> bool {
    field.len() >= LONG_FIELD && raised()
}

/// Whether the flag watched on this thread is raised; cold and out of line,
/// off the path of every field that is not long.
#[cold]
#[inline(never)]
fn raised() -> bool {
    WATCHED.with(|watched| {
        watched
            .borrow()
            .as_ref()
            .is_some_and(|flag| flag.load(Ordering::Relaxed))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_watched_flag_of_this_thread_counts_and_watches_nest() {
        let long = vec![b'a'; LONG_FIELD];
        let (outer, inner) = (Stop::default(), Stop::default());
        outer.request();
        assert!(!gives_up(&long), "nothing is watched outside `watch`");
        outer.watch(|| {
            assert!(gives_up(&long));
            assert!(!gives_up(&long[1..]), "a short field is read whatever the flag");
            inner.watch(|| assert!(!gives_up(&long), "the inner watch's flag is down"));
            assert!(gives_up(&long), "the outer flag is watched again");
            std::thread::scope(|s| {
                s.spawn(|| assert!(!gives_up(&long), "another thread watches nothing"));
            });
        });
        assert!(!gives_up(&long));
    }

    #[test]
    fn a_panic_inside_watch_puts_the_previous_flag_back() {
        let stop = Stop::default();
        stop.request();
        let long = vec![0u8; LONG_FIELD];
        let result = std::panic::catch_unwind(|| stop.watch(|| panic!("evaluation failed")));
        assert!(result.is_err());
        assert!(!gives_up(&long));
    }
}
