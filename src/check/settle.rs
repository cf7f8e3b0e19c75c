//! The settle-and-retry loop: work that is finishing gets time to finish.
//!
//! A check looks once; if nothing survives, it returns at once (a clean pass never sleeps). Else
//! it polls again with exponential backoff (100 µs doubling, capped at 100 ms) until nothing
//! survives or the deadline passes; a thread that ends wakes the sync form early (see
//! [`lineage::wait_for_exit`]), so a test whose thread finishes 1 ms late waits about 1 ms. A
//! deadline, not a count of tries: goleak's fixed 20 tries (431 ms) were its maintainers' regret
//! on loaded CI machines. The deadline is the most a check waits: between looks, the early
//! verdict ([`early`]) watches the threads that could end a survivor, and ends the settle as soon
//! as none can before the deadline (each caller says which threads, or none).
//!
//! The async form waits on [`Delay`], a timer that does not need the tokio time driver: a
//! current_thread runtime runs other tasks only while the checking future yields, so a blocking
//! sleep there would itself cause false leaks, and tokio's own timer is absent from runtimes built
//! without `enable_time`, frozen under `start_paused`, and stalls during a task dump.

// The async half (settle_async, Delay, the timer) serves async checks only.
#![cfg_attr(not(feature = "tokio"), allow(dead_code))]

use std::collections::BinaryHeap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Condvar, LazyLock, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use super::early;
use crate::probe::lineage;

const FIRST_WAIT: Duration = Duration::from_micros(100);
const LONGEST_WAIT: Duration = Duration::from_millis(100);

/// The backoff schedule, bounded by a deadline.
pub(crate) struct Backoff {
    pub(crate) deadline: Instant,
    next: Duration,
}

impl Backoff {
    pub(crate) fn new(settle: Duration) -> Backoff {
        Backoff {
            deadline: Instant::now() + settle,
            next: FIRST_WAIT,
        }
    }

    /// The next wait, or `None` once the deadline has passed.
    fn next_wait(&mut self) -> Option<Duration> {
        let left = self.deadline.checked_duration_since(Instant::now())?;
        if left.is_zero() {
            return None;
        }
        let wait = self.next.min(left);
        self.next = (self.next * 2).min(LONGEST_WAIT);
        Some(wait)
    }
}

/// What a settle ended with: the survivors of the last look, and, when the early verdict ended
/// it before the deadline, how long the scope was observed (see [`early`]).
pub(crate) struct Settled<T> {
    pub(crate) left: Vec<T>,
    pub(crate) early: Option<Duration>,
}

/// Calls `look` until it returns an empty list, `settle` has passed, or the threads `scope`
/// names (`None`: no early verdict) provably cannot change the verdict before the deadline.
pub(crate) fn settle<T>(
    settle: Duration,
    window: Option<Duration>,
    mut look: impl FnMut() -> Vec<T>,
    mut scope: impl FnMut() -> Option<Vec<i32>>,
) -> Settled<T> {
    let mut backoff = Backoff::new(settle);
    let _checking = early::Checking::enter();
    loop {
        let exits = lineage::exit_count();
        let left = look();
        if left.is_empty() {
            return Settled { left, early: None };
        }
        if let Some((window, tids)) = window.and_then(|window| Some((window, scope()?))) {
            // The observation is this round's wait; a thread that exits ends it.
            let mut pause = |wait: Duration| {
                lineage::wait_for_exit(exits, wait);
                lineage::exit_count() == exits
            };
            if let Some(observed) = early::observe(&tids, window, backoff.deadline, None, &mut pause) {
                return looked_again(look(), observed);
            }
        }
        match backoff.next_wait() {
            Some(wait) => lineage::wait_for_exit(exits, wait),
            None => return Settled { left, early: None },
        }
    }
}

/// [`settle`] for async code: waits without blocking the runtime. The checking thread is part of
/// the observed scope (it runs the runtime), so the observation runs on a helper thread while
/// this future waits.
pub(crate) async fn settle_async<T>(
    settle: Duration,
    window: Option<Duration>,
    mut look: impl FnMut() -> Vec<T>,
    mut scope: impl FnMut() -> Option<Vec<i32>>,
) -> Settled<T> {
    let mut backoff = Backoff::new(settle);
    loop {
        // Let tasks that are ready run first: on a current_thread runtime they cannot run
        // while this future is being polled.
        yield_now().await;
        let left = look();
        if left.is_empty() {
            return Settled { left, early: None };
        }
        if let Some((window, tids)) = window.and_then(|window| Some((window, scope()?))) {
            let (deadline, checker) = (backoff.deadline, lineage::gettid());
            let observed = off_thread(move || {
                early::observe(&tids, window, deadline, Some(checker), &mut |wait| {
                    std::thread::sleep(wait);
                    true
                })
            })
            .await;
            if let Some(observed) = observed.flatten() {
                return looked_again(look(), observed);
            }
        }
        match backoff.next_wait() {
            Some(wait) => Delay::new(wait).await,
            None => return Settled { left, early: None },
        }
    }
}

/// The verdict after an observation that proved the scope still: a look taken before it may
/// have seen work that ended before the observation began, so the survivors are those of a look
/// taken after it, which nothing in the scope can have changed.
fn looked_again<T>(left: Vec<T>, observed: Duration) -> Settled<T> {
    let early = (!left.is_empty()).then_some(observed);
    Settled { left, early }
}

/// Runs `work` on a helper thread that belongs to no test; `None` if none could be started.
async fn off_thread<R: Send + 'static>(work: impl FnOnce() -> R + Send + 'static) -> Option<R> {
    type Slot<R> = Arc<Mutex<(Option<R>, Option<Waker>, bool)>>;
    let slot: Slot<R> = Arc::new(Mutex::new((None, None, false)));
    let done = slot.clone();
    let started = lineage::detached(|| {
        std::thread::Builder::new()
            .name("leakcheck-observer".into())
            .spawn(move || {
                let result = work();
                let mut slot = done.lock().unwrap_or_else(|e| e.into_inner());
                slot.0 = Some(result);
                slot.2 = true;
                if let Some(waker) = slot.1.take() {
                    waker.wake();
                }
            })
    });
    if started.is_err() {
        return None;
    }
    std::future::poll_fn(|cx| {
        let mut slot = slot.lock().unwrap_or_else(|e| e.into_inner());
        if slot.2 {
            return Poll::Ready(slot.0.take());
        }
        slot.1 = Some(cx.waker().clone());
        Poll::Pending
    })
    .await
}

/// Yields once to the executor.
pub(crate) async fn yield_now() {
    let mut yielded = false;
    std::future::poll_fn(|cx| {
        if yielded {
            Poll::Ready(())
        } else {
            yielded = true;
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    })
    .await
}

/// A future that completes after a real-time duration, driven by one process-wide timer thread
/// that belongs to no test.
pub(crate) struct Delay {
    at: Instant,
    shared: Option<Arc<Mutex<Option<Waker>>>>,
}

impl Delay {
    pub(crate) fn new(after: Duration) -> Delay {
        Delay {
            at: Instant::now() + after,
            shared: None,
        }
    }
}

impl Future for Delay {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if Instant::now() >= self.at {
            return Poll::Ready(());
        }
        match &self.shared {
            Some(shared) => {
                *shared.lock().unwrap_or_else(|e| e.into_inner()) = Some(cx.waker().clone());
            }
            None => {
                let shared = Arc::new(Mutex::new(Some(cx.waker().clone())));
                timer().add(self.at, shared.clone());
                self.shared = Some(shared);
            }
        }
        Poll::Pending
    }
}

struct Entry {
    at: Instant,
    waker: Arc<Mutex<Option<Waker>>>,
}

impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        self.at == other.at
    }
}
impl Eq for Entry {}
impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Entry {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        other.at.cmp(&self.at) // earliest first in the max-heap
    }
}

struct Timer {
    queue: Mutex<BinaryHeap<Entry>>,
    changed: Condvar,
}

impl Timer {
    fn add(&self, at: Instant, waker: Arc<Mutex<Option<Waker>>>) {
        self.queue
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(Entry { at, waker });
        self.changed.notify_one();
    }

    fn run(&self) {
        let mut queue = self.queue.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            let now = Instant::now();
            while queue.peek().is_some_and(|entry| entry.at <= now) {
                if let Some(entry) = queue.pop() {
                    if let Some(waker) = entry.waker.lock().unwrap_or_else(|e| e.into_inner()).take() {
                        waker.wake();
                    }
                }
            }
            queue = match queue.peek().map(|entry| entry.at - now) {
                Some(wait) => {
                    self.changed
                        .wait_timeout(queue, wait)
                        .unwrap_or_else(|e| e.into_inner())
                        .0
                }
                None => self.changed.wait(queue).unwrap_or_else(|e| e.into_inner()),
            };
        }
    }
}

fn timer() -> &'static Timer {
    static TIMER: LazyLock<&'static Timer> = LazyLock::new(|| {
        let timer: &'static Timer = Box::leak(Box::new(Timer {
            queue: Mutex::new(BinaryHeap::new()),
            changed: Condvar::new(),
        }));
        let started = crate::probe::lineage::detached(|| {
            std::thread::Builder::new()
                .name("leakcheck-timer".into())
                .spawn(move || timer.run())
        });
        if started.is_err() {
            // Without the thread, delays still complete: `Delay::poll` compares the clock and the
            // settle loop polls again after each yield. Nothing else to do.
        }
        timer
    });
    &TIMER
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A clean look returns at once, without sleeping.
    #[test]
    fn clean_pass_does_not_wait() {
        let started = Instant::now();
        let settled: Settled<()> = settle(Duration::from_secs(10), None, Vec::new, || None);
        assert!(settled.left.is_empty());
        assert!(started.elapsed() < Duration::from_secs(1));
    }

    /// Survivors that never go away are returned once the deadline has passed, not before.
    #[test]
    fn gives_up_at_the_deadline() {
        let started = Instant::now();
        let mut looks = 0;
        let settled = settle(
            Duration::from_millis(200),
            None,
            || {
                looks += 1;
                vec![1]
            },
            || None,
        );
        assert_eq!(settled.left, vec![1]);
        assert!(started.elapsed() >= Duration::from_millis(200));
        assert!(looks > 3, "backoff polls several times, got {looks}");
    }

    /// The async timer wakes a future polled by a plain executor after the requested time.
    #[test]
    fn delay_completes() {
        let started = Instant::now();
        futures::executor::block_on(Delay::new(Duration::from_millis(30)));
        assert!(started.elapsed() >= Duration::from_millis(30));
    }
}
