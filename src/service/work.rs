//! Where CPU-heavy work runs: planning large specs, evaluating large batches,
//! generating code.
//!
//! Work above a small cost runs on tokio's blocking pool, at most
//! `cpu_slots` at a time, so the async workers stay free to accept
//! connections, move bytes and answer health checks however heavy the
//! requests are. Small work runs inline, where a thread hop would cost more
//! than the work. A caller that stops waiting (its deadline passed, or the
//! client went away) sets [`Cancel`], which long loops check between slices,
//! and which stops substring checks on long fields inside a key (see
//! [`keyfilter_core::eval::Stop`]).

use std::sync::Arc;

use keyfilter_core::eval::Stop;
use tokio::sync::Semaphore;
use tonic::Status;

use super::metrics;

/// Work below this cost (see each caller: bytes of spec plus 8 per key)
/// runs inline on the async worker: up to 64k keys, a millisecond or two,
/// which keeps the usual `Filter` batches (10k keys) free of a thread hop
/// while a million-key `Match` or a megabyte spec moves off the workers.
pub(super) const INLINE_COST: usize = 1 << 19;

/// At most this many keys are evaluated between two looks at [`Cancel`].
pub(super) const SLICE_KEYS: usize = 1 << 16;

/// About this much work (in the units of [`INLINE_COST`]) is done between
/// two looks at [`Cancel`]: a few milliseconds. A spec of thousands of
/// checks makes a slice far fewer keys than [`SLICE_KEYS`].
pub(super) const SLICE_COST: usize = 1 << 23;

/// Set once nobody waits for the work's result any more.
#[derive(Clone, Debug, Default)]
pub struct Cancel(Stop);

impl Cancel {
    /// Whether the work should stop.
    pub fn is_cancelled(&self) -> bool {
        self.0.is_requested()
    }

    /// Runs `evaluation` so that, once cancelled, it winds down even inside
    /// one key (its results are then to be discarded).
    pub fn watch<R>(&self, evaluation: impl FnOnce() -> R) -> R {
        self.0.watch(evaluation)
    }

    /// A cancel already raised (for tests of what cancelled work does).
    #[cfg(test)]
    pub(super) fn cancelled() -> Cancel {
        let cancel = Cancel::default();
        cancel.0.request();
        cancel
    }

    /// The status to return when it stops early (nobody reads it: the
    /// caller has gone, and tonic answers the deadline itself).
    pub fn status() -> Status {
        Status::cancelled("the call ended before its work was done")
    }
}

/// Sets the flag when the waiting future is dropped, finished or not.
struct CancelOnDrop(Cancel);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0 .0.request();
    }
}

/// The bounded pool of CPU slots.
#[derive(Debug)]
pub struct Cpu {
    slots: Arc<Semaphore>,
}

impl Cpu {
    /// At most `slots` pieces of heavy work at once.
    pub fn new(slots: usize) -> Cpu {
        Cpu {
            slots: Arc::new(Semaphore::new(slots.max(1))),
        }
    }

    /// Runs `work`, inline when `cost` is below [`INLINE_COST`], otherwise on
    /// the blocking pool once a slot is free. The slot is held until `work`
    /// returns, even if the caller stopped waiting: the bound is on threads
    /// actually computing.
    pub async fn run<T, F>(&self, cost: usize, work: F) -> Result<T, Status>
    where
        T: Send + 'static,
        F: FnOnce(&Cancel) -> Result<T, Status> + Send + 'static,
    {
        let cancel = Cancel::default();
        if cost < INLINE_COST {
            return work(&cancel);
        }
        let _stop_when_dropped = CancelOnDrop(cancel.clone());
        let waiting = metrics::CpuSlotWait::start();
        let slot = self
            .slots
            .clone()
            .acquire_owned()
            .await
            .expect("the CPU semaphore is never closed");
        drop(waiting);
        tokio::task::spawn_blocking(move || {
            let (_slot, _busy) = (slot, metrics::CpuSlotBusy::start());
            work(&cancel)
        })
        .await
        .map_err(|e| Status::internal(format!("evaluation failed: {e}")))?
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn heavy_work_leaves_the_async_workers_free_and_stops_when_abandoned() {
        let cpu = Arc::new(Cpu::new(1));
        let stopped = Arc::new(AtomicBool::new(false));
        let seen = stopped.clone();
        let call = tokio::spawn({
            let cpu = cpu.clone();
            async move {
                cpu.run(INLINE_COST, move |cancel| {
                    while !cancel.is_cancelled() {
                        std::thread::sleep(std::time::Duration::from_millis(1));
                    }
                    seen.store(true, Ordering::Relaxed);
                    Err::<(), _>(Cancel::status())
                })
                .await
            }
        });
        // The runtime still runs other tasks promptly while the work spins.
        let started = std::time::Instant::now();
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        assert!(started.elapsed() < std::time::Duration::from_millis(500));
        call.abort();
        for _ in 0..200 {
            if stopped.load(Ordering::Relaxed) {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        panic!("the abandoned work did not stop");
    }
}
