//! The worker threads of the current tokio runtime, when leakcheck did not build it (a plain
//! `#[tokio::test]`), found exactly rather than by name.
//!
//! A multi-thread runtime has `num_workers` worker threads, started from its blocking pool. Which
//! pool thread runs which worker is not fixed at creation (a pool thread takes whatever job is
//! queued first, so a thread started for a `spawn_blocking` closure can end up running a worker
//! while the thread started for that worker runs the closure): creation sites cannot tell them
//! apart. So the workers are asked: one probe task per worker, each recording the lineage node of
//! the thread it runs on and then holding that worker until all have arrived, so that no worker
//! runs two of them. `num_workers` distinct nodes arrive in microseconds on an idle runtime.
//!
//! Limits: a worker busy for longer than the probe's deadline (a task that blocks it) is not
//! found and is reported with its stack. A check made from a worker (inside a spawned task) probes
//! nothing: its root is that worker, whose descendants the other workers are not (a thread that
//! took a worker over during `block_in_place` is, and is counted). A `current_thread` runtime has no workers (its tasks run on the
//! thread that calls `block_on`), so nothing is probed. Blocking-pool threads are not workers: an
//! idle one is hidden by the built-in `tokio_idle_blocking_thread` rule, one still running a
//! closure is a survivor. tokio's own answer (`RuntimeMetrics::worker_thread_id`, under
//! `--cfg tokio_unstable`) gives std `ThreadId`s, which lineage does not record (the interposer
//! runs before std has a `Thread` for the new thread), so it is not used.

use std::collections::HashSet;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use tokio::runtime::{Handle, RuntimeFlavor};

use super::lineage::{self, Node};

/// How long the probe waits for every worker to run one probe task. Idle workers arrive in
/// microseconds; the deadline only matters for a worker a task keeps busy, and must outlast the
/// scheduling delays of a loaded machine (at 500 ms, a worker of a test in CI's parallel run on 2
/// CPUs was once not recognized, and reported).
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// Where the probe tasks meet.
struct Gate {
    arrived: Mutex<Vec<Arc<Node>>>,
    all_in: Condvar,
    expected: usize,
    deadline: Instant,
}

impl Gate {
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Arc<Node>>> {
        self.arrived.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits (blocking) until every worker arrived or the deadline passed.
    fn wait(&self) {
        let arrived = self.lock();
        let left = self.deadline.saturating_duration_since(Instant::now());
        let _ = self
            .all_in
            .wait_timeout_while(arrived, left, |arrived| arrived.len() < self.expected);
    }

    fn uids(&self) -> HashSet<u64> {
        self.lock().iter().map(|node| node.uid).collect()
    }
}

/// The uids of the current runtime's workers (empty outside a multi-thread runtime, or when the
/// calling thread started nothing the workers could be). Blocks the calling thread until every
/// worker ran the probe, for at most [`PROBE_TIMEOUT`].
pub(crate) fn own_workers(root: &Node) -> HashSet<u64> {
    let Some(gate) = start_probe(root) else {
        return HashSet::new();
    };
    gate.wait();
    gate.uids()
}

/// [`own_workers`] from async code: yields to the runtime while the workers run the probe.
pub(crate) async fn own_workers_async(root: &Node) -> HashSet<u64> {
    let Some(gate) = start_probe(root) else {
        return HashSet::new();
    };
    while gate.lock().len() < gate.expected && Instant::now() < gate.deadline {
        tokio::task::yield_now().await;
    }
    gate.uids()
}

/// Spawns one probe task per worker, if the calling thread is inside a multi-thread runtime (not
/// on one of its workers) and has live descendants (which the workers would be).
fn start_probe(root: &Node) -> Option<Arc<Gate>> {
    let handle = Handle::try_current().ok()?;
    if handle.runtime_flavor() != RuntimeFlavor::MultiThread || lineage::live_descendants(root).is_empty() {
        return None;
    }
    // Inside a task the calling thread is itself a worker and the root of the check: the other
    // workers are not its descendants (its probes would also sit in its own unstealable LIFO slot).
    if tokio::task::try_id().is_some() {
        return None;
    }
    let expected = handle.metrics().num_workers();
    let gate = Arc::new(Gate {
        arrived: Mutex::new(Vec::with_capacity(expected)),
        all_in: Condvar::new(),
        expected,
        deadline: Instant::now() + PROBE_TIMEOUT,
    });
    for _ in 0..expected {
        let gate = gate.clone();
        drop(handle.spawn(async move {
            let mut arrived = gate.lock();
            arrived.push(lineage::current());
            if arrived.len() >= gate.expected {
                gate.all_in.notify_all();
                return;
            }
            drop(arrived);
            // Hold this worker so that it takes no other probe task.
            gate.wait();
        }));
    }
    Some(gate)
}
