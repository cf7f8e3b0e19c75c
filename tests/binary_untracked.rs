//! Own binary: `check_binary!()` checks the whole process at exit, so no other test may share it.
//!
//! Threads no `pthread_create` call went through (a `timer_create(SIGEV_THREAD)` callback, started
//! by glibc internally) are reported by the whole-binary check at exit; glibc's permanent timer
//! helper is not.
// Linux only: glibc's `timer_create(SIGEV_THREAD)` helpers are what it is about.
#![cfg(target_os = "linux")]

#[path = "it/common/mod.rs"]
mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::run_ignored;

leakcheck::check_binary!();

/// Set by the timer callback once it runs.
static FIRED: AtomicBool = AtomicBool::new(false);

/// A `SIGEV_THREAD` timer callback that never returns.
extern "C" fn blocked_forever(_: libc::sigval) {
    FIRED.store(true, Ordering::SeqCst);
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

/// A `SIGEV_THREAD` timer callback that returns at once.
extern "C" fn returns(_: libc::sigval) {
    FIRED.store(true, Ordering::SeqCst);
}

/// glibc's `sigevent` for `SIGEV_THREAD` (the `libc` crate does not expose the function slot).
#[repr(C)]
struct SigevThread {
    value: libc::sigval,
    signo: libc::c_int,
    notify: libc::c_int,
    function: Option<extern "C" fn(libc::sigval)>,
    attribute: *mut libc::pthread_attr_t,
    _pad: [u8; 32],
}

const _: () = assert!(size_of::<SigevThread>() == size_of::<libc::sigevent>());

/// Starts a one-shot `SIGEV_THREAD` timer firing `callback` after 50 ms and waits until it ran;
/// returns the timer.
fn fire_timer(callback: extern "C" fn(libc::sigval)) -> libc::timer_t {
    // SAFETY: SigevThread is plain data; all-zero is valid.
    let mut event: SigevThread = unsafe { std::mem::zeroed() };
    event.notify = libc::SIGEV_THREAD;
    event.function = Some(callback);
    let mut timer: libc::timer_t = std::ptr::null_mut();
    let fire = libc::itimerspec {
        it_interval: libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        },
        it_value: libc::timespec {
            tv_sec: 0,
            tv_nsec: 50_000_000,
        },
    };
    // SAFETY: `event` has glibc's sigevent layout (size asserted); the pointers are valid.
    unsafe {
        let event = (&mut event as *mut SigevThread).cast::<libc::sigevent>();
        assert_eq!(libc::timer_create(libc::CLOCK_MONOTONIC, event, &mut timer), 0);
        assert_eq!(libc::timer_settime(timer, 0, &fire, std::ptr::null_mut()), 0);
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while !FIRED.load(Ordering::SeqCst) {
        assert!(Instant::now() < deadline, "the timer never fired");
        std::thread::sleep(Duration::from_millis(5));
    }
    timer
}

/// Fixture: a timer whose callback blocks forever (its thread outlives the test).
#[test]
#[ignore = "fixture, run by timer_callback_thread_is_reported_at_exit"]
fn fixture_timer_callback_blocks_forever() {
    fire_timer(blocked_forever);
}

/// Fixture: a timer whose callback returns, deleted afterwards.
#[test]
#[ignore = "fixture, run by finished_timer_passes"]
fn fixture_timer_callback_returns_clean() {
    let timer = fire_timer(returns);
    // SAFETY: deletes the timer created above.
    unsafe { libc::timer_delete(timer) };
}

/// A `timer_create(SIGEV_THREAD)` callback blocked forever is reported at exit, as a thread
/// created outside `pthread_create`, with its kernel state.
#[test]
fn timer_callback_thread_is_reported_at_exit() {
    let run = common::run_binary_check("fixture_timer_callback_blocks_forever");
    let report = run.binary_report();
    assert!(
        report.contains("leakcheck: 1 thread leaked by `the test binary`"),
        "{report}"
    );
    assert!(report.contains("created outside `pthread_create`"), "{report}");
    assert!(report.contains("clock_nanosleep"), "{report}");
}

/// A timer whose callback returned leaves only glibc's permanent helper, which is nobody's leak.
#[test]
fn finished_timer_passes() {
    run_ignored(
        "fixture_timer_callback_returns_clean",
        &[("LEAKCHECK_SETTLE", "500ms")],
    )
    .assert_clean_pass();
}

/// Fixture: a `#[leak_test]` whose timer callback blocks forever (fails when run one test per
/// process, where such threads are attributed to the test).
#[leakcheck::leak_test(settle = "200ms")]
#[ignore = "fixture, run by per_test_check_reports_timer_callback_under_nextest"]
fn fixture_per_test_timer_leak() {
    fire_timer(blocked_forever);
}

/// Fixture: a `#[leak_test]` whose timer callback returns.
#[leakcheck::leak_test(settle = "500ms")]
#[ignore = "fixture, run by per_test_check_reports_timer_callback_under_nextest"]
fn fixture_per_test_timer_clean() {
    let timer = fire_timer(returns);
    // SAFETY: deletes the timer created above.
    unsafe { libc::timer_delete(timer) };
}

/// One test per process (nextest's mode, from its environment variables): a per-test check
/// reports a thread created outside `pthread_create`, and passes a timer that finished.
#[test]
fn per_test_check_reports_timer_callback_under_nextest() {
    let nextest = [("NEXTEST", "1"), ("NEXTEST_EXECUTION_MODE", "process-per-test")];
    let run = run_ignored("fixture_per_test_timer_leak", &nextest);
    assert!(!run.success, "{}{}", run.stdout, run.stderr);
    assert!(
        run.stdout
            .contains("leakcheck: 1 thread leaked by `fixture_per_test_timer_leak`"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("created outside `pthread_create`"),
        "{}",
        run.stdout
    );
    let run = run_ignored("fixture_per_test_timer_clean", &nextest);
    assert!(run.success, "{}{}", run.stdout, run.stderr);
}
