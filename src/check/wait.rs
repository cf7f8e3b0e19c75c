//! How each surviving thread waits: the kernel is sampled when the settle loop first sees a
//! candidate and again when the survivors are described, and the two readings are classified
//! (untimed wait, timed wait, sleep loop, IO, running). A clean pass never samples: the first
//! look found nothing.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::model::{Wait, WaitKind};
use crate::probe::procfs::{self, Sample};

/// The first reading of each candidate, taken at the start of the settle window.
#[derive(Default)]
pub(crate) struct WaitSamples {
    first: HashMap<i32, (Instant, Sample)>,
}

impl WaitSamples {
    /// Samples the threads among `tids` not sampled yet (nothing when `tids` is empty).
    pub(crate) fn record(&mut self, tids: impl IntoIterator<Item = i32>) {
        for tid in tids {
            if tid != 0 && !self.first.contains_key(&tid) {
                self.first.insert(tid, (Instant::now(), procfs::sample(tid)));
            }
        }
    }

    /// Samples `tid` again and classifies its wait across the window; `None` where the platform
    /// says nothing of its threads' waits (no reading at all: nothing to classify).
    pub(crate) fn classify(&self, tid: i32) -> Option<Wait> {
        // A thread caught between two waits (a sleep loop's brief work) reads as running: look
        // again a few times before calling it that.
        let mut end = procfs::sample(tid);
        for _ in 0..RUNNING_RETRIES {
            if end.syscall.is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(2));
            end = procfs::sample(tid);
        }
        (end != Sample::default()).then(|| classify(self.first.get(&tid), Instant::now(), &end))
    }
}

/// `futex` operations that wait (the command bits of the operation argument).
const FUTEX_WAIT: u64 = 0;
const FUTEX_WAIT_BITSET: u64 = 9;
const FUTEX_LOCK_PI: u64 = 6;
const FUTEX_WAIT_REQUEUE_PI: u64 = 11;
const FUTEX_CMD_MASK: u64 = 0x7f;

/// How often a thread that reads as running is sampled again.
const RUNNING_RETRIES: usize = 4;

/// Wake-ups in the window from which an untimed wait is a loop.
const LOOP_WAKEUPS: u64 = 3;

/// Classifies a wait from its first reading (if any) and its last.
fn classify(first: Option<&(Instant, Sample)>, now: Instant, end: &Sample) -> Wait {
    let window = first.map(|(at, _)| now.saturating_duration_since(*at));
    let wakeups =
        first.and_then(|(_, start)| Some(end.voluntary_switches?.saturating_sub(start.voluntary_switches?)));
    let cpu = first.and_then(|(_, start)| {
        let ticks = end.cpu_ticks?.saturating_sub(start.cpu_ticks?);
        Some(Duration::from_millis(ticks * 1000 / procfs::ticks_per_second()))
    });
    let mut wait = Wait {
        kind: WaitKind::Other,
        call: None,
        wakeups,
        window,
        cpu,
        resources: Vec::new(),
    };
    let Some((nr, args)) = end.syscall else {
        // Between two waits: a loop if it woke again and again and mostly slept.
        let mostly_asleep = match (cpu, window) {
            (Some(cpu), Some(window)) => cpu * 2 < window,
            _ => false,
        };
        let looping = wakeups.is_some_and(|n| n >= LOOP_WAKEUPS) && mostly_asleep;
        wait.kind = if looping {
            WaitKind::SleepLoop
        } else {
            WaitKind::Running
        };
        return wait;
    };
    let call = procfs::call_name(nr);
    wait.kind = match call.as_str() {
        "futex" => {
            let op = args[1] & FUTEX_CMD_MASK;
            let waits = matches!(
                op,
                FUTEX_WAIT | FUTEX_WAIT_BITSET | FUTEX_LOCK_PI | FUTEX_WAIT_REQUEUE_PI
            );
            match (waits, args[3] != 0) {
                (false, _) => WaitKind::Other,
                (true, true) => WaitKind::Timed,
                // A wake-up or two is start-up or a spurious wake; a loop wakes again and again,
                // on the same futex. Wake-ups counted from a first reading elsewhere (the thread
                // still starting, or waiting on another lock) say nothing of this wait.
                (true, false) if wakeups.unwrap_or(0) < LOOP_WAKEUPS || !same_futex(first, args[0]) => {
                    WaitKind::Untimed
                }
                (true, false) => WaitKind::SleepLoop,
            }
        }
        // One sleep is a timed wait; a sleep that woke again and again is a loop.
        "nanosleep" | "clock_nanosleep" if wakeups.is_some_and(|n| n >= LOOP_WAKEUPS) => WaitKind::SleepLoop,
        "nanosleep" | "clock_nanosleep" => WaitKind::Timed,
        "accept" | "accept4" | "read" | "recvfrom" | "recvmsg" | "connect" => {
            wait.resources.extend(procfs::describe_fd(args[0]));
            WaitKind::Io
        }
        "epoll_wait" | "epoll_pwait" | "epoll_pwait2" => {
            wait.resources = procfs::epoll_targets(args[0])
                .into_iter()
                .filter_map(procfs::describe_fd)
                .collect();
            WaitKind::Io
        }
        "poll" | "ppoll" | "select" | "pselect6" => WaitKind::Io,
        _ => WaitKind::Other,
    };
    wait.call = Some(call);
    wait
}

/// Whether the first reading shows the thread waiting on the futex at `address` already.
fn same_futex(first: Option<&(Instant, Sample)>, address: u64) -> bool {
    first
        .and_then(|(_, start)| start.syscall)
        .is_some_and(|(nr, args)| procfs::call_name(nr) == "futex" && args[0] == address)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe::sys;

    fn blocked(nr: i64, args: [u64; 6], switches: u64) -> Sample {
        Sample {
            state: Some('S'),
            syscall: Some((nr, args)),
            voluntary_switches: Some(switches),
            cpu_ticks: Some(0),
            ..Sample::default()
        }
    }

    /// A futex wait without a timeout and no wake-up is untimed; with a timeout, timed; woken
    /// repeatedly, a loop; one sleep is timed, a sleep woken again and again a loop; no system
    /// call is running.
    #[test]
    fn classifies_waits() {
        // Waits are read as system calls only where the platform reports them (Linux).
        let (Some(futex), Some(nanosleep)) = (
            sys::syscall_number("futex"),
            sys::syscall_number("clock_nanosleep"),
        ) else {
            return;
        };
        let start = Instant::now();
        let first = (start, blocked(futex, [1, 0x80, 0, 0, 0, 0], 5));
        let later = start + Duration::from_millis(300);
        let untimed = classify(Some(&first), later, &blocked(futex, [1, 0x80, 0, 0, 0, 0], 5));
        assert_eq!(untimed.kind, WaitKind::Untimed);
        assert_eq!(untimed.wakeups, Some(0));
        let timed = classify(
            Some(&first),
            later,
            &blocked(futex, [1, 0x89, 0, 0x7ff0, 0, !0], 5),
        );
        assert_eq!(timed.kind, WaitKind::Timed);
        let once = classify(Some(&first), later, &blocked(futex, [1, 0x80, 0, 0, 0, 0], 6));
        assert_eq!(once.kind, WaitKind::Untimed);
        let looping = classify(Some(&first), later, &blocked(futex, [1, 0x80, 0, 0, 0, 0], 9));
        assert_eq!(looping.kind, WaitKind::SleepLoop);
        assert_eq!(looping.wakeups, Some(4));
        // The same wake-ups counted from a first reading on another lock (a thread still
        // starting when the settle window opened): the wait itself is untimed.
        let starting = (start, blocked(futex, [2, 0x80, 0, 0, 0, 0], 5));
        let settled = classify(Some(&starting), later, &blocked(futex, [1, 0x80, 0, 0, 0, 0], 9));
        assert_eq!(settled.kind, WaitKind::Untimed);
        let sleep = classify(None, later, &blocked(nanosleep, [0; 6], 1));
        assert_eq!(sleep.kind, WaitKind::Timed, "one sleep, never woken, is no loop");
        let first_sleep = (Instant::now(), blocked(nanosleep, [0; 6], 1));
        let slept_again = classify(Some(&first_sleep), later, &blocked(nanosleep, [0; 6], 1));
        assert_eq!(slept_again.kind, WaitKind::Timed);
        let sleeps = classify(Some(&first_sleep), later, &blocked(nanosleep, [0; 6], 9));
        assert_eq!(sleeps.kind, WaitKind::SleepLoop);
        let running = Sample {
            state: Some('R'),
            ..Sample::default()
        };
        assert_eq!(classify(None, later, &running).kind, WaitKind::Running);
        let between = Sample {
            voluntary_switches: Some(20),
            cpu_ticks: Some(0),
            ..running
        };
        assert_eq!(classify(Some(&first), later, &between).kind, WaitKind::SleepLoop);
    }
}
