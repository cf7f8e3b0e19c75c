//! A thread's registration follows its real life: a thread that ends with `pthread_exit` is gone
//! (no phantom in this or later checks), and a thread stuck in a thread-local destructor after its
//! start routine returned is still alive (reported).
#![cfg(all(target_os = "linux", target_env = "gnu"))]

use crate::common;

use std::ffi::c_void;
use std::sync::{Condvar, Mutex};

use common::{run_ignored, LEAK_SETTLE};
use leakcheck::{leak_test, Options};

/// A start routine that leaves through `pthread_exit` (a forced unwind), never by returning.
extern "C-unwind" fn exit_early(_: *mut c_void) -> *mut c_void {
    // SAFETY: ends the calling thread, which holds nothing that needs dropping.
    unsafe { libc::pthread_exit(std::ptr::null_mut()) }
}

/// Starts a raw thread that ends with `pthread_exit` and joins it.
fn raw_thread_with_pthread_exit() {
    type Routine = extern "C" fn(*mut c_void) -> *mut c_void;
    // SAFETY: same ABI; "C-unwind" lets the forced unwind of `pthread_exit` leave the routine.
    let routine = unsafe {
        std::mem::transmute::<extern "C-unwind" fn(*mut c_void) -> *mut c_void, Routine>(exit_early)
    };
    let mut thread: libc::pthread_t = 0;
    // SAFETY: valid out pointer, default attributes, a routine that ignores its argument.
    let created =
        unsafe { libc::pthread_create(&mut thread, std::ptr::null(), routine, std::ptr::null_mut()) };
    assert_eq!(created, 0, "pthread_create");
    // SAFETY: a joinable thread created above, joined once.
    let joined = unsafe { libc::pthread_join(thread, std::ptr::null_mut()) };
    assert_eq!(joined, 0, "pthread_join");
}

/// A joined thread that ended with `pthread_exit` passes, and leaves no phantom for later checks.
#[leak_test]
fn pthread_exit_thread_is_gone() {
    raw_thread_with_pthread_exit();
    raw_thread_with_pthread_exit();
    Options::new()
        .settle(LEAK_SETTLE)
        .find()
        .expect("a joined pthread_exit thread is not a leak");
}

/// Fixture: two `pthread_exit` threads, joined, then a later check in the same test.
#[leak_test]
#[ignore]
fn fixture_clean_pthread_exit_joined() {
    raw_thread_with_pthread_exit();
    Options::new().find().expect("first check");
    raw_thread_with_pthread_exit();
}

/// Run alone, the `pthread_exit` fixture passes: no "exited while its stack was being captured".
#[test]
fn pthread_exit_fixture_passes() {
    let run = run_ignored("fixture_clean_pthread_exit_joined", &[]);
    assert!(run.success, "{}\n{}", run.stdout, run.stderr);
    assert!(
        run.stdout
            .contains("test lifecycle::fixture_clean_pthread_exit_joined ... ok"),
        "{}",
        run.stdout
    );
    assert!(!run.stderr.contains("leakcheck"), "{}", run.stderr);
}

/// Released by `release_destructors`; a `StuckOnDrop` waits for it in its destructor.
static RELEASED: Mutex<bool> = Mutex::new(false);
static RELEASE: Condvar = Condvar::new();

/// A thread-local whose destructor blocks until released.
struct StuckOnDrop;

impl Drop for StuckOnDrop {
    #[inline(never)]
    fn drop(&mut self) {
        let mut released = RELEASED.lock().unwrap_or_else(|e| e.into_inner());
        while !*released {
            released = RELEASE.wait(released).unwrap_or_else(|e| e.into_inner());
        }
    }
}

thread_local! {
    static STUCK: StuckOnDrop = const { StuckOnDrop };
}

fn release_destructors() {
    *RELEASED.lock().unwrap_or_else(|e| e.into_inner()) = true;
    RELEASE.notify_all();
}

/// Starts a thread whose body returns at once but whose thread-local destructor blocks.
fn thread_stuck_in_tls_destructor() -> std::thread::JoinHandle<()> {
    std::thread::Builder::new()
        .name("tls-dtor-stuck".into())
        .spawn(|| STUCK.with(|_| ()))
        .expect("spawn")
}

/// A thread stuck in a thread-local destructor is alive: reported; once released, it is gone.
#[test]
fn blocking_tls_destructor_is_caught() {
    let worker = thread_stuck_in_tls_destructor();
    let error = Options::new()
        .settle(LEAK_SETTLE)
        .find()
        .expect_err("a thread stuck in its TLS destructor is alive");
    assert_eq!(error.threads(), 1, "{error}");
    let report = error.to_string();
    assert!(report.contains("\"tls-dtor-stuck\""), "{report}");
    assert!(report.contains("StuckOnDrop"), "{report}");
    release_destructors();
    worker.join().unwrap();
    Options::new()
        .settle(LEAK_SETTLE)
        .find()
        .expect("released and joined: clean");
}

/// Fixture: a thread stuck in its thread-local destructor when the test ends.
#[leak_test(settle = "300ms")]
#[ignore]
fn fixture_blocking_tls_destructor() {
    drop(thread_stuck_in_tls_destructor());
}

/// Run alone, the blocking-destructor fixture fails with a report naming the stuck destructor.
#[test]
fn blocking_tls_destructor_fixture_fails() {
    let run = run_ignored("fixture_blocking_tls_destructor", &[]);
    assert!(!run.success, "{}\n{}", run.stdout, run.stderr);
    assert!(
        run.stdout
            .contains("test lifecycle::fixture_blocking_tls_destructor ... FAILED"),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("1 thread leaked"), "{}", run.stdout);
    assert!(run.stdout.contains("StuckOnDrop"), "{}", run.stdout);
}
