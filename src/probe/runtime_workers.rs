//! The worker threads of the current tokio runtime, when leakcheck did not build it (a plain
//! `#[tokio::test]`), found exactly rather than by name.
//!
//! A `multi_thread` runtime starts its workers in one launch loop, on the thread that builds it:
//! they share a creator and the very same creation backtrace. A probe task spawned on the current
//! runtime runs on one of its workers and reports that worker's lineage node; the workers are then
//! the live threads with its creator and its creation backtrace. A second runtime, built at
//! another place, has another backtrace; two runtimes built at the same place (a helper called
//! twice) are told apart by launch order, since each loop creates `num_workers` threads in a row.
//!
//! A `current_thread` runtime has no workers: its tasks run on the thread that calls `block_on`.
//! Its blocking-pool threads (and a multi-thread runtime's) are not workers: an idle one is hidden
//! by the built-in `tokio_idle_blocking_thread` rule, one still running a closure is a survivor.
//!
//! tokio's own answer (`RuntimeMetrics::worker_thread_id`, `--cfg tokio_unstable`) gives std
//! `ThreadId`s, which lineage does not record (the interposer runs before std names a thread), so
//! it is not used. Limit: a thread that took over a worker's scheduler during `block_in_place`
//! was started elsewhere and counts as a blocking-pool thread.

use std::collections::HashSet;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use tokio::runtime::{Handle, RuntimeFlavor};

use super::lineage::{self, Node};

/// How long the probe task may take to be picked up by a worker.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// The uids of the current runtime's workers among `root`'s live descendants (empty outside a
/// multi-thread runtime). Blocks the calling thread until a worker runs the probe task.
pub(crate) fn own_workers(root: u64) -> HashSet<u64> {
    let Some((handle, receiver)) = start_probe(root) else {
        return HashSet::new();
    };
    let worker = receiver.recv_timeout(PROBE_TIMEOUT).ok();
    siblings(&handle, root, worker)
}

/// [`own_workers`] from async code: yields to the runtime while the probe task runs.
pub(crate) async fn own_workers_async(root: u64) -> HashSet<u64> {
    let Some((handle, receiver)) = start_probe(root) else {
        return HashSet::new();
    };
    let started = Instant::now();
    let worker = loop {
        match receiver.try_recv() {
            Ok(worker) => break Some(worker),
            Err(mpsc::TryRecvError::Disconnected) => break None,
            Err(mpsc::TryRecvError::Empty) if started.elapsed() > PROBE_TIMEOUT => break None,
            Err(mpsc::TryRecvError::Empty) => tokio::task::yield_now().await,
        }
    };
    siblings(&handle, root, worker)
}

/// Spawns the probe task if the calling thread is inside a multi-thread runtime and has live
/// descendants (which the runtime's workers would be).
fn start_probe(root: u64) -> Option<(Handle, mpsc::Receiver<std::sync::Arc<Node>>)> {
    let handle = Handle::try_current().ok()?;
    if handle.runtime_flavor() != RuntimeFlavor::MultiThread || lineage::live_descendants(root).is_empty() {
        return None;
    }
    let (sender, receiver) = mpsc::channel();
    drop(handle.spawn(async move {
        let _ = sender.send(lineage::current());
    }));
    Some((handle, receiver))
}

/// The worker's launch: live descendants of `root` with its creator and creation backtrace, cut
/// into launches of `num_workers` threads in creation order.
fn siblings(handle: &Handle, root: u64, worker: Option<std::sync::Arc<Node>>) -> HashSet<u64> {
    let Some(worker) = worker else {
        return HashSet::new();
    };
    let Some(creator) = worker.parent.as_ref().map(|parent| parent.uid) else {
        return HashSet::new();
    };
    let mut launch: Vec<u64> = lineage::live_descendants(root)
        .iter()
        .filter(|node| {
            node.parent.as_ref().is_some_and(|parent| parent.uid == creator)
                && node.created_at == worker.created_at
        })
        .map(|node| node.uid)
        .collect();
    launch.sort_unstable();
    let workers = handle.metrics().num_workers().max(1);
    if launch.len() > workers && launch.len().is_multiple_of(workers) {
        if let Some(chunk) = launch.chunks(workers).find(|chunk| chunk.contains(&worker.uid)) {
            return chunk.iter().copied().collect();
        }
    }
    launch.into_iter().collect()
}
