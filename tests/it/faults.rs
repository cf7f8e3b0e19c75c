//! Fault cases: capture racing thread exits, a thousand survivors, a task dump that cannot finish,
//! forks racing thread creation.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::{Duration, Instant};

use leakcheck::Options;

/// Dumping every thread's stack while threads keep starting and exiting never crashes or hangs.
#[test]
fn capture_racing_thread_exits() {
    let stop = Arc::new(AtomicBool::new(false));
    let churn = {
        let stop = stop.clone();
        thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let short: Vec<_> = (0..8)
                    .map(|_| thread::spawn(|| std::hint::black_box(1)))
                    .collect();
                for t in short {
                    t.join().unwrap();
                }
            }
        })
    };
    let started = Instant::now();
    let mut dumps = 0;
    while dumps < 3 || started.elapsed() < Duration::from_secs(1) {
        let dump = leakcheck::dump();
        assert!(dump.threads().count() >= 2);
        dumps += 1;
    }
    stop.store(true, Ordering::Relaxed);
    churn.join().unwrap();
    assert!(dumps >= 3);
}

#[inline(never)]
fn parked_forever(release: mpsc::Receiver<()>) {
    let _ = release.recv();
}

/// A thousand leaked threads are reported as one group, and the check completes.
#[test]
fn a_thousand_leaked_threads() {
    let (ready, all_ready) = mpsc::channel::<()>();
    let releases: Vec<_> = (0..1000)
        .map(|_| {
            let (release, wait) = mpsc::channel::<()>();
            let ready = ready.clone();
            thread::Builder::new()
                .name("many".into())
                .stack_size(64 * 1024)
                .spawn(move || {
                    ready.send(()).unwrap();
                    parked_forever(wait)
                })
                .unwrap();
            release
        })
        .collect();
    // On a loaded machine a thread may not have run yet; one that has not reached its wait
    // would be a group of its own.
    for _ in 0..1000 {
        all_ready.recv().unwrap();
    }
    let error = Options::new()
        .settle(Duration::from_millis(200))
        .find()
        .expect_err("leak");
    assert_eq!(error.threads(), 1000);
    let report = error.to_string();
    assert!(report.contains("×1000 threads \"many\""), "{report}");
    assert!(
        report.contains("stuck in   it::faults::parked_forever"),
        "{report}"
    );
    drop(releases);
    Options::new().settle(Duration::from_secs(10)).verify_none();
}

/// A task dump that cannot finish (a worker thread blocked outside tokio) degrades to spawn sites
/// after the watchdog, instead of hanging the check.
#[cfg(all(tokio_unstable, feature = "taskdump"))]
#[leakcheck::leak_test(settle = "300ms", flavor = "multi_thread", worker_threads = 2)]
#[ignore = "fixture, run by task_dump_that_cannot_finish_degrades"]
async fn fixture_blocked_worker_during_dump() {
    let (release, blocked) = std::sync::mpsc::channel::<()>();
    tokio::spawn(async move {
        let _ = blocked.recv(); // blocks a worker thread: the dump can never stop it
    });
    tokio::spawn(std::future::pending::<()>());
    std::mem::forget(release);
}

/// The report of a test whose task dump could not finish says so and still lists the tasks.
#[cfg(all(tokio_unstable, feature = "taskdump"))]
#[test]
fn task_dump_that_cannot_finish_degrades() {
    let exe = std::env::current_exe().unwrap();
    let output = std::process::Command::new(exe)
        .args(["--ignored", "--exact"])
        .arg(crate::common::test_path("fixture_blocked_worker_during_dump"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(!output.status.success(), "{stdout}");
    assert!(stdout.contains("the task dump did not finish"), "{stdout}");
    assert!(stdout.contains("spawned at tests/it/faults.rs:"), "{stdout}");
}

/// Forks while three other threads keep creating and joining threads; each child creates and joins
/// a thread of its own, then exits. No child hangs on a lock that another thread of the parent
/// held at the instant of the fork (each child has a 10-s alarm, so a regression fails the test
/// instead of hanging the run), and the test itself is clean: its threads joined, its children
/// reaped.
///
/// The child creates its thread with `pthread_create` itself, which goes through leakcheck's
/// interposer and registry: std's `thread::spawn` in a forked child also takes std's own lock
/// (the new thread's stack-overflow guard record, `thread_info`), which a creating thread of the
/// parent may hold at the fork, whether or not leakcheck is linked.
#[cfg(target_os = "linux")]
#[leakcheck::leak_test]
fn fork_storm_under_concurrent_creation() {
    const FORKS: usize = 300;
    let stop = Arc::new(AtomicBool::new(false));
    let creators: Vec<_> = (0..3)
        .map(|_| {
            let stop = stop.clone();
            thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    thread::spawn(|| std::hint::black_box(1)).join().unwrap();
                }
            })
        })
        .collect();
    let mut failed = 0;
    for _ in 0..FORKS {
        // SAFETY: the child only creates and joins a thread (glibc makes malloc and thread
        // creation work in the child of a multi-threaded process), then leaves with `_exit`.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            extern "C" fn start(arg: *mut std::ffi::c_void) -> *mut std::ffi::c_void {
                arg
            }
            // SAFETY: creates and joins one thread, then leaves.
            unsafe {
                libc::alarm(10);
                let mut thread: libc::pthread_t = std::mem::zeroed();
                let created =
                    libc::pthread_create(&mut thread, std::ptr::null(), start, std::ptr::null_mut());
                let joined = created == 0 && libc::pthread_join(thread, std::ptr::null_mut()) == 0;
                libc::_exit(if joined { 0 } else { 1 });
            }
        }
        assert!(pid > 0, "fork failed");
        let mut status = 0;
        // SAFETY: waits for the child just forked.
        assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
        if !(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0) {
            failed += 1;
        }
    }
    stop.store(true, Ordering::Relaxed);
    for creator in creators {
        creator.join().unwrap();
    }
    assert_eq!(
        failed, 0,
        "{failed} of {FORKS} forked children hung (killed by their alarm) or failed"
    );
}
