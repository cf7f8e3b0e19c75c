//! The early verdict: end the settle as soon as the survivors provably cannot end within it.
//!
//! A survivor can only end if something that can wake it runs: the test's threads (an async
//! check's own thread included: it runs the runtime's tasks, or sits in `block_on`), the runtime
//! threads its tasks run on, threads the test may have handed work to (the main thread, pools in
//! `static`s such as rayon's global pool, singletons), and other tests' threads (a lock one
//! holds, a reply one sends: measured, a window does not cover these, see `benches/README.md`).
//! So the settle loop ([`super::settle`]) ends before its deadline when, for every thread of the
//! process but leakcheck's own and those waiting in a settle loop:
//!
//! - the kernel shows it blocked (`S`) in a system call, and nothing changes over a short window:
//!   state, call and arguments, voluntary and involuntary context switches, CPU time (no wake-up);
//!   two readings that agree already prove that every thread was blocked at one same instant
//!   (a wake-up in between would have counted a switch); the window only catches work that a
//!   thread outside the scope is about to hand back;
//! - the call cannot wake it by itself before the deadline ([`wakeup::wake`]): an untimed wait
//!   (a futex without timeout, `accept`, a read on a socket or pipe, `epoll_wait(-1)`) waits for
//!   another thread, which is itself blocked, or for the outside world; a timed one (a sleep, a
//!   futex or epoll timeout: a parked tokio worker's timeout is its runtime's next timer) is due
//!   after the deadline. A relative timeout is counted from the latest moment its wait can have
//!   begun: the thread's start, the last reading that differed, or, for the checking thread, the
//!   start of the observation.
//!
//! Then nothing in the scope runs before the deadline, and the verdict cannot change. Where the
//! evidence is missing (no `/proc`, an unknown call, a running child process the test started)
//! or another test is busy, the settle goes on as before. A wake-up from outside the process (a
//! network peer, a signal) is the residual risk; the window was chosen on the parallel stress run
//! (`benches/README.md`). `LEAKCHECK_EARLY=off` turns the early verdict off (for comparisons).

use std::time::{Duration, Instant};

use crate::probe::children::{self, Liveness};
use crate::probe::lineage::{self, Node};
use crate::probe::procfs::{self, Sample};
use crate::probe::wakeup::{self, Wake};

/// How many readings a window is split into (after the first).
const READINGS: u32 = 4;

/// The time between two readings until every thread is blocked at once.
const FIRST_PAUSE: Duration = Duration::from_millis(1);

/// How long an observation waits for every thread to be blocked at once (the checking thread
/// parks only after it has handed the observation over).
const FIRST_BLOCKED: Duration = Duration::from_millis(30);

/// The threads whose kernel state decides for the check rooted at `root`: every thread of the
/// process but leakcheck's own helpers, the threads waiting in a sync settle loop (see
/// [`Checking`]), and the checking thread unless `with_root` (an async check, whose thread runs
/// the runtime). Other tests' threads count: one may release a lock or send a reply that a
/// survivor waits for. `None` if a child process the test started is running (it may write to a
/// pipe one of them reads).
pub(crate) fn scope_tids(root: &Node, with_root: bool) -> Option<Vec<i32>> {
    if children::any_below(root)
        && children::descendants_of(root)
            .iter()
            .any(|(_, liveness)| *liveness == Liveness::Running)
    {
        return None;
    }
    let checking = CHECKING.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let own = lineage::gettid();
    let tids = procfs::process_tids()
        .into_iter()
        .filter(|tid| (with_root && *tid == own) || !checking.contains(tid) && *tid != own)
        .filter(|tid| !procfs::thread_name(*tid).is_some_and(|name| name.starts_with("leakcheck-")))
        .collect();
    Some(tids)
}

/// Threads in a sync settle loop: their short timed waits are leakcheck's, not work a survivor
/// waits for, and would otherwise keep two leaking tests that settle side by side from ever
/// seeing a still process.
static CHECKING: std::sync::Mutex<Vec<i32>> = std::sync::Mutex::new(Vec::new());

/// Marks the calling thread as settling while it lives.
pub(crate) struct Checking(i32);

impl Checking {
    pub(crate) fn enter() -> Checking {
        let tid = lineage::gettid();
        CHECKING.lock().unwrap_or_else(|e| e.into_inner()).push(tid);
        Checking(tid)
    }
}

impl Drop for Checking {
    fn drop(&mut self) {
        let mut checking = CHECKING.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(at) = checking.iter().position(|tid| *tid == self.0) {
            checking.swap_remove(at);
        }
    }
}

/// Watches `tids` for `window`; returns how long if every one stayed blocked and unchanged,
/// with no wake-up of its own due before `deadline`. `checker` is a thread known to be running
/// when the observation began. `pause` sleeps between readings; it returns `false` to give up
/// (a thread exited). Gives up at the first change.
pub(crate) fn observe(
    tids: &[i32],
    window: Duration,
    deadline: Instant,
    checker: Option<i32>,
    pause: &mut dyn FnMut(Duration) -> bool,
) -> Option<Duration> {
    let started = Instant::now();
    // Each thread's last reading, and the time of the last reading before it changed to that.
    let mut last: Vec<(Sample, Option<Instant>)> = Vec::new();
    let mut last_at = started;
    let mut steady: Option<Instant> = None;
    loop {
        let at = Instant::now();
        let readings: Vec<Sample> = tids.iter().map(|&tid| procfs::sample(tid)).collect();
        let same =
            readings.len() == last.len() && readings.iter().zip(&last).all(|(now, (was, _))| now == was);
        match steady {
            Some(_) if !same => return None,
            Some(since) if at - since >= window => break,
            Some(_) => {}
            None if readings.iter().all(blocked) => steady = Some(at),
            None if at - started >= FIRST_BLOCKED => return None,
            None => {}
        }
        // A reading that differed bounds when each thread's current wait began.
        last = match last.len() == readings.len() {
            true => readings
                .into_iter()
                .zip(last)
                .map(|(now, (was, changed))| {
                    let changed = if now == was { changed } else { Some(last_at) };
                    (now, changed)
                })
                .collect(),
            false => readings.into_iter().map(|now| (now, None)).collect(),
        };
        last_at = at;
        // Until all are blocked, look again soon (the checking thread is about to park); then a
        // few readings across the window. A reading of many threads takes a while: wait at least
        // as long between two.
        let next = match steady {
            None => FIRST_PAUSE,
            Some(_) => window / READINGS,
        };
        if !pause(next.max(at.elapsed())) {
            return None;
        }
    }
    let due = deadline.saturating_duration_since(Instant::now());
    for (&tid, (sample, changed)) in tids.iter().zip(&last) {
        let began = [*changed, (Some(tid) == checker).then_some(started)]
            .into_iter()
            .flatten()
            .max()
            .map(|at| at.elapsed())
            .or_else(|| age(sample))?;
        let (nr, args) = sample.syscall?;
        match wakeup::wake(nr, args, began) {
            Wake::Never => {}
            Wake::After(after) if after > due => {}
            Wake::After(_) | Wake::Unknown => return None,
        }
    }
    Some(started.elapsed())
}

/// The report's line for an early verdict.
pub(crate) fn describe(observed: Duration) -> String {
    format!(
        "every survivor is blocked with no wake-up due before the settle deadline, and so is every \
         thread that could wake one; observed for {} ms",
        observed.as_millis()
    )
}

/// Blocked in a system call, with the counters that show a wake-up.
fn blocked(sample: &Sample) -> bool {
    sample.state == Some('S')
        && sample.syscall.is_some()
        && sample.voluntary_switches.is_some()
        && sample.involuntary_switches.is_some()
        && sample.cpu_ticks.is_some()
}

/// How long ago the thread started, at most (a clock tick of slack).
fn age(sample: &Sample) -> Option<Duration> {
    let ticks = sample.started? + 1;
    let started = Duration::from_millis(ticks * 1000 / procfs::ticks_per_second());
    Some(crate::probe::sys::process_clock().saturating_sub(started))
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;
    use std::sync::mpsc;

    fn tid_of(spawn: impl FnOnce() + Send + 'static) -> i32 {
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            tx.send(lineage::gettid()).unwrap();
            spawn();
        });
        rx.recv().unwrap()
    }

    fn sleep(pause: Duration) -> bool {
        std::thread::sleep(pause);
        true
    }

    /// A thread parked for good and one in a 30-s sleep give an early verdict against a 2-s
    /// deadline; a thread whose 1-s sleep ends before it does not.
    #[test]
    fn blocked_threads_end_the_wait() {
        let (_keep, parked) = mpsc::channel::<()>();
        let forever = tid_of(move || {
            let _ = parked.recv();
        });
        let long = tid_of(|| std::thread::sleep(Duration::from_secs(30)));
        let short = tid_of(|| std::thread::sleep(Duration::from_secs(1)));
        std::thread::sleep(Duration::from_millis(20));
        let deadline = Instant::now() + Duration::from_secs(2);
        let window = Duration::from_millis(20);
        let observed = observe(&[forever, long], window, deadline, None, &mut sleep);
        assert!(observed.is_some_and(|observed| observed >= window));
        assert_eq!(
            observe(&[forever, short], window, deadline, None, &mut sleep),
            None
        );
    }
}
