//! Tests of the Linux capture: real threads, real signals, and re-executed children for the
//! cases that change process-wide state.

use super::handler::{handler_of, installed};
use super::protocol::{self, unanswered};
use super::unwinder::UNWINDER_HITS;
use super::{Captured, Policy};
use crate::model::frame::{first_user_frame, short_location};
use crate::probe::procfs::kernel_wait;
use crate::probe::symbols;
use libc::c_int;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

const TIMEOUT: Duration = Duration::from_secs(2);

/// Captures as a per-test check does (the threads are its own leaks).
fn capture(tids: &[i32], timeout: Duration) -> Vec<Captured> {
    protocol::capture(tids, timeout, Policy::OwnLeaks)
}
/// Set in the environment of a re-executed test binary to run a test's child half.
const CHILD_VAR: &str = "LEAKCHECK_STACK_TEST_CHILD";

fn gettid() -> i32 {
    // SAFETY: gettid has no preconditions.
    unsafe { libc::gettid() }
}

/// Waits (at most 5 s) until thread `tid` sleeps in the kernel.
fn wait_until_sleeping(tid: i32) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while kernel_wait(tid).state != Some('S') {
        assert!(Instant::now() < deadline, "thread {tid} never went to sleep");
        thread::sleep(Duration::from_millis(1));
    }
}

#[inline(never)]
fn blocked_receiver(rx: mpsc::Receiver<u32>) -> u32 {
    let value = rx.recv().unwrap_or(0);
    std::hint::black_box(value)
}

/// A thread blocked in `blocked_receiver` until released.
struct Blocked {
    tid: i32,
    release: mpsc::Sender<u32>,
    handle: thread::JoinHandle<u32>,
}

impl Blocked {
    fn start() -> Blocked {
        let (tid_tx, tid_rx) = mpsc::channel();
        let (release, rx) = mpsc::channel();
        let handle = thread::spawn(move || {
            tid_tx.send(gettid()).unwrap();
            blocked_receiver(rx)
        });
        let tid = tid_rx.recv().unwrap();
        wait_until_sleeping(tid);
        Blocked { tid, release, handle }
    }

    /// Wakes the thread with `value` and returns what it received.
    fn release(self, value: u32) -> u32 {
        self.release.send(value).unwrap();
        self.handle.join().unwrap()
    }
}

fn functions(ips: &[usize]) -> Vec<String> {
    symbols::resolve(ips)
        .into_iter()
        .map(|frame| frame.function)
        .collect()
}

/// Re-runs this test binary on one test with `CHILD_VAR` set; returns the child's stdout.
fn run_child(test: &str, env: &[(&str, &str)]) -> String {
    let module = module_path!().split_once("::").unwrap().1;
    let output = Command::new(std::env::current_exe().unwrap())
        .args([
            &format!("{module}::{test}"),
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_VAR, "1")
        .envs(env.iter().copied())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "child failed: {}\n{stdout}\n{stderr}",
        output.status
    );
    stdout
}

/// A thread blocked in `recv` is captured in `blocked_receiver`, then still receives.
#[test]
fn captures_blocked_receiver() {
    let blocked = Blocked::start();
    let captured = capture(&[blocked.tid], TIMEOUT);
    let Captured::Frames(ips) = &captured[0] else {
        panic!("{captured:?}")
    };
    let resolved = symbols::resolve(ips);
    let user = first_user_frame(&resolved).unwrap();
    assert!(
        user.function.ends_with("tests::blocked_receiver"),
        "{resolved:#?}"
    );
    // Builds without debug info (`cargo test --release`) resolve names only.
    if user.file.is_some() {
        let location = short_location(user).unwrap();
        assert!(location.contains("src/probe/stack/tests.rs:"), "{location}");
    }
    assert!(
        resolved.iter().all(|frame| !frame.function.contains("on_signal")),
        "{resolved:#?}"
    );
    assert_eq!(blocked.release(7), 7);
}

/// A sleeping thread is captured mid-sleep and still sleeps its full time.
#[test]
fn sleeping_thread_sleeps_full_time() {
    let (tid_tx, tid_rx) = mpsc::channel();
    let sleeper = thread::spawn(move || {
        tid_tx.send(gettid()).unwrap();
        let start = Instant::now();
        thread::sleep(Duration::from_millis(300));
        start.elapsed()
    });
    let tid = tid_rx.recv().unwrap();
    wait_until_sleeping(tid);
    let captured = capture(&[tid], TIMEOUT);
    let Captured::Frames(ips) = &captured[0] else {
        panic!("{captured:?}")
    };
    let functions = functions(ips);
    let in_sleep = |f: &String| f.starts_with("std::thread::") && f.ends_with("::sleep");
    assert!(functions.iter().any(in_sleep), "{functions:#?}");
    assert!(sleeper.join().unwrap() >= Duration::from_millis(300));
}

/// A thread that blocks every signal is not signalled (under any policy), and says why at once.
#[test]
fn blocked_signals_are_not_signalled() {
    let (tid_tx, tid_rx) = mpsc::channel();
    let (release, rx) = mpsc::channel::<u32>();
    let deaf = thread::spawn(move || {
        // SAFETY: plain sigset manipulation on locals, then a mask change of this thread.
        let previous = unsafe {
            let mut all: libc::sigset_t = std::mem::zeroed();
            let mut previous: libc::sigset_t = std::mem::zeroed();
            libc::sigfillset(&mut all);
            libc::pthread_sigmask(libc::SIG_BLOCK, &all, &mut previous);
            previous
        };
        tid_tx.send(gettid()).unwrap();
        let value = rx.recv().unwrap();
        // SAFETY: plain sigset query of this thread.
        let pending = unsafe {
            let mut pending: libc::sigset_t = std::mem::zeroed();
            libc::sigpending(&mut pending);
            (libc::SIGRTMIN()..=libc::SIGRTMAX()).any(|signo| libc::sigismember(&pending, signo) == 1)
        };
        // SAFETY: restores this thread's previous mask.
        unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &previous, std::ptr::null_mut()) };
        assert!(
            !pending,
            "a real-time signal is pending for a thread that blocks them"
        );
        value
    });
    let tid = tid_rx.recv().unwrap();
    wait_until_sleeping(tid);
    for policy in [Policy::OwnLeaks, Policy::Transparent] {
        let start = Instant::now();
        let captured = protocol::capture(&[tid], Duration::from_millis(200), policy);
        assert!(
            start.elapsed() < Duration::from_millis(150),
            "{:?}",
            start.elapsed()
        );
        let [Captured::NotSignalled(why)] = &captured[..] else {
            panic!("{captured:?}")
        };
        assert!(why.contains("blocks the capture signal"), "{why}");
    }
    release.send(5).unwrap();
    assert_eq!(deaf.join().unwrap(), 5);
}

/// A thread that has exited is reported as such.
#[test]
fn exited_thread() {
    let tid = thread::spawn(gettid).join().unwrap();
    // SAFETY: getpid has no preconditions.
    let pid = unsafe { libc::getpid() };
    let deadline = Instant::now() + Duration::from_secs(5);
    while unanswered(pid, tid) != Captured::Exited {
        assert!(Instant::now() < deadline, "thread {tid} never went away");
        thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(capture(&[tid, -1], TIMEOUT), [Captured::Exited, Captured::Exited]);
}

/// The calling thread is captured directly, without capture's own frames.
#[test]
fn captures_own_thread() {
    let captured = protocol::capture(&[gettid()], TIMEOUT, Policy::Transparent);
    let Captured::Frames(ips) = &captured[0] else {
        panic!("{captured:?}")
    };
    let functions = functions(ips);
    assert!(functions[0].contains("captures_own_thread"), "{functions:#?}");
}

/// 200 threads are captured in one call (more than the 64 slots), all with frames.
#[test]
fn captures_200_threads() {
    let blocked: Vec<Blocked> = (0..200).map(|_| Blocked::start()).collect();
    let tids: Vec<i32> = blocked.iter().map(|thread| thread.tid).collect();
    let captured = capture(&tids, TIMEOUT);
    for answer in &captured {
        assert!(
            matches!(answer, Captured::Frames(ips) if ips.len() > 3),
            "{answer:?}"
        );
    }
    for (value, thread) in blocked.into_iter().enumerate() {
        assert_eq!(thread.release(value as u32), value as u32);
    }
}

#[inline(never)]
fn panic_from(depth: u32) {
    if depth == 0 {
        panic!("unwinding on purpose");
    }
    panic_from(std::hint::black_box(depth - 1));
    std::hint::black_box(depth);
}

/// Capturing threads that keep panicking (and walking their stacks in the panic hook) never
/// crashes the process: without the "inside the unwinder" check it crashed 8 runs out of 9.
#[test]
fn survives_panicking_threads() {
    if std::env::var_os(CHILD_VAR).is_none() {
        let stdout = run_child("survives_panicking_threads", &[]);
        assert!(stdout.contains("child ok"), "{stdout}");
        return;
    }
    // Like a default hook with RUST_BACKTRACE=1, minus the printing.
    std::panic::set_hook(Box::new(|_| drop(std::backtrace::Backtrace::force_capture())));
    let stop = std::sync::Arc::new(AtomicBool::new(false));
    let (tid_tx, tid_rx) = mpsc::channel();
    let panickers: Vec<_> = (0..2)
        .map(|_| {
            let (stop, tid_tx) = (stop.clone(), tid_tx.clone());
            thread::spawn(move || {
                tid_tx.send(gettid()).unwrap();
                let mut caught = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    caught += std::panic::catch_unwind(|| panic_from(20)).is_err() as u64;
                }
                caught
            })
        })
        .collect();
    let tids: Vec<i32> = tid_rx.iter().take(2).collect();
    let start = Instant::now();
    let (mut rounds, mut answered) = (0, 0);
    while start.elapsed() < Duration::from_secs(2) {
        let captured = capture(&tids, Duration::from_millis(100));
        answered += captured
            .iter()
            .filter(|answer| matches!(answer, Captured::Frames(_)))
            .count();
        rounds += 1;
    }
    stop.store(true, Ordering::Relaxed);
    let caught: u64 = panickers.into_iter().map(|thread| thread.join().unwrap()).sum();
    let hits = UNWINDER_HITS.load(Ordering::Relaxed);
    println!("{rounds} rounds, {answered} stacks, {hits} unwinder hits, {caught} panics");
    assert!(caught > 0 && answered > 0);
    println!("child ok");
}

/// A handler the program put on the first candidate signal stays; the next signal is used.
#[test]
fn keeps_existing_handler() {
    static USER_HANDLER_RAN: AtomicBool = AtomicBool::new(false);
    extern "C" fn user_handler(_signo: c_int) {
        USER_HANDLER_RAN.store(true, Ordering::SeqCst);
    }
    if std::env::var_os(CHILD_VAR).is_none() {
        assert!(run_child("keeps_existing_handler", &[]).contains("child ok"));
        return;
    }
    let first = libc::SIGRTMIN() + 3;
    let user = user_handler as extern "C" fn(c_int) as libc::sighandler_t;
    // SAFETY: installs an async-signal-safe handler in this child process.
    unsafe { libc::signal(first, user) };
    let blocked = Blocked::start();
    assert!(matches!(
        &capture(&[blocked.tid], TIMEOUT)[0],
        Captured::Frames(_)
    ));
    assert_eq!(installed(), Ok(first + 1));
    assert_eq!(handler_of(first), Some(user));
    // SAFETY: raises the signal at this process, whose handler is user_handler.
    unsafe { libc::raise(first) };
    assert!(USER_HANDLER_RAN.load(Ordering::SeqCst));
    assert_eq!(blocked.release(1), 1);
    println!("child ok");
}

/// `LEAKCHECK_STACKS=off` makes capture answer `Disabled` without installing anything.
#[test]
fn switch_off_disables_capture() {
    if std::env::var_os(CHILD_VAR).is_none() {
        let stdout = run_child("switch_off_disables_capture", &[("LEAKCHECK_STACKS", "off")]);
        assert!(stdout.contains("child ok"));
        return;
    }
    let blocked = Blocked::start();
    assert_eq!(
        crate::probe::stack::capture(&[blocked.tid], TIMEOUT, Policy::Transparent),
        [Captured::Disabled]
    );
    assert!((libc::SIGRTMIN() + 3..libc::SIGRTMAX()).all(|signo| handler_of(signo) == Some(libc::SIG_DFL)));
    assert_eq!(blocked.release(1), 1);
    println!("child ok");
}

/// The kernel reports a thread blocked on a futex as sleeping in `futex`.
#[test]
fn kernel_wait_of_futex_sleeper() {
    let blocked = Blocked::start();
    let wait = kernel_wait(blocked.tid);
    assert_eq!(wait.state, Some('S'), "{wait:?}");
    let futexish = wait.wchan.as_deref().is_some_and(|wchan| wchan.contains("futex"))
        || wait.syscall.as_deref() == Some("futex");
    assert!(futexish, "{wait:?}");
    eprintln!("{wait:?}");
    assert_eq!(blocked.release(1), 1);
}

/// Not a check: times capturing and resolving 1000 blocked threads.
// cargo test [--release] --lib measure_1000_threads -- --ignored --nocapture
#[test]
#[ignore]
fn measure_1000_threads() {
    let blocked: Vec<Blocked> = (0..1000).map(|_| Blocked::start()).collect();
    let tids: Vec<i32> = blocked.iter().map(|thread| thread.tid).collect();
    let signo = installed().unwrap();
    // SAFETY: getpid has no preconditions.
    let mut look = super::safety::Look::new(signo, Policy::Transparent, unsafe { libc::getpid() });
    let start = Instant::now();
    let allowed = tids
        .iter()
        .filter(|&&tid| look.may_signal(tid, false).is_ok())
        .count();
    let deciding = start.elapsed();
    eprintln!("1000 threads: deciding {deciding:?} ({allowed} may be signalled)");
    let start = Instant::now();
    let captured = capture(&tids, TIMEOUT);
    let capturing = start.elapsed();
    let stacks: Vec<&Vec<usize>> = captured
        .iter()
        .map(|answer| match answer {
            Captured::Frames(ips) => ips,
            other => panic!("{other:?}"),
        })
        .collect();
    let start = Instant::now();
    let first: usize = stacks.iter().map(|ips| symbols::resolve(ips).len()).sum();
    let resolving = start.elapsed();
    let start = Instant::now();
    let again: usize = stacks.iter().map(|ips| symbols::resolve(ips).len()).sum();
    let cached = start.elapsed();
    assert_eq!(first, again);
    eprintln!(
        "1000 threads: capture {capturing:?}, resolve {resolving:?} (first), {cached:?} (cached), \
             {first} frames"
    );
    for (value, thread) in blocked.into_iter().enumerate() {
        assert_eq!(thread.release(value as u32), value as u32);
    }
}
