//! A plain `#[tokio::test]` (no leakcheck attribute) that calls `verify_none_async()`: the
//! current runtime's own workers are found exactly, not by name, so a second runtime's workers
//! and a `spawn_blocking` closure that never returns are reported, in both flavors, while the
//! runtime's own threads and an idle blocking thread pass.

use crate::common;

use std::sync::mpsc;
use std::time::Duration;

use common::{run_ignored, LEAK_SETTLE};
use leakcheck::Options;

/// A second multi-thread runtime with tokio's default thread names, shut down by the caller.
fn second_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .expect("second runtime")
}

/// Starts a blocking closure that waits until the returned sender is dropped or used.
fn stuck_blocking() -> mpsc::Sender<()> {
    let (release, wait) = mpsc::channel::<()>();
    drop(tokio::task::spawn_blocking(move || {
        let _ = wait.recv();
    }));
    release
}

/// The verdict of a check with a short settle deadline.
async fn verdict() -> Result<(), String> {
    Options::new()
        .settle(LEAK_SETTLE)
        .find_async()
        .await
        .map_err(|error| error.to_string())
}

/// multi_thread: a second runtime's two workers are reported, not taken for the test's own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_runtime_is_reported_multi_thread() {
    let second = second_runtime();
    let report = verdict().await.unwrap_err();
    second.shutdown_background();
    assert!(report.contains("2 threads leaked"), "{report}");
    assert!(report.contains("tokio-rt-worker"), "{report}");
}

/// current_thread: a second runtime's two workers are reported.
#[tokio::test]
async fn second_runtime_is_reported_current_thread() {
    let second = second_runtime();
    let report = verdict().await.unwrap_err();
    second.shutdown_background();
    assert!(report.contains("2 threads leaked"), "{report}");
}

/// multi_thread: a `spawn_blocking` closure that never returns is reported.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stuck_spawn_blocking_is_reported_multi_thread() {
    let release = stuck_blocking();
    let report = verdict().await.unwrap_err();
    drop(release);
    assert!(report.contains("1 thread leaked"), "{report}");
}

/// current_thread: a `spawn_blocking` closure that never returns is reported.
#[tokio::test]
async fn stuck_spawn_blocking_is_reported_current_thread() {
    let release = stuck_blocking();
    let report = verdict().await.unwrap_err();
    drop(release);
    assert!(report.contains("1 thread leaked"), "{report}");
}

/// multi_thread: the runtime's own workers, busy with tasks, are not survivors.
#[tokio::test(flavor = "multi_thread", worker_threads = 3)]
async fn own_workers_pass() {
    let tasks: Vec<_> = (0..8).map(|i| tokio::spawn(async move { i * 2 })).collect();
    for task in tasks {
        task.await.unwrap();
    }
    leakcheck::verify_none_async().await;
}

/// Both flavors: an idle blocking thread left by a finished `spawn_blocking` passes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_blocking_thread_passes_multi_thread() {
    assert_eq!(tokio::task::spawn_blocking(|| 42).await.unwrap(), 42);
    Options::new().settle(LEAK_SETTLE).verify_none_async().await;
}

/// current_thread: an idle blocking thread left by a finished `spawn_blocking` passes.
#[tokio::test]
async fn idle_blocking_thread_passes_current_thread() {
    assert_eq!(tokio::task::spawn_blocking(|| 42).await.unwrap(), 42);
    Options::new().settle(LEAK_SETTLE).verify_none_async().await;
}

/// A check made inside a spawned task (on a worker) passes with the runtime's workers alive.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_from_a_worker_passes() {
    let verdict = tokio::spawn(async { verdict().await }).await.unwrap();
    assert_eq!(verdict, Ok(()));
}

/// The sync check inside a multi-thread runtime finds its workers too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_check_in_a_runtime_passes() {
    tokio::spawn(async {}).await.unwrap();
    Options::new().verify_none();
}

/// Fixture: a plain `#[tokio::test]` that forgets a second runtime.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "fixture, run by forgotten_runtime_fails_the_plain_tokio_test"]
async fn fixture_plain_tokio_forgotten_runtime() {
    std::mem::forget(second_runtime());
    Options::new()
        .settle(Duration::from_millis(300))
        .verify_none_async()
        .await;
}

/// The forgotten runtime's workers fail the test, as its own output shows.
#[test]
fn forgotten_runtime_fails_the_plain_tokio_test() {
    let run = run_ignored("fixture_plain_tokio_forgotten_runtime", &[]);
    assert!(!run.success, "{}{}", run.stdout, run.stderr);
    assert!(
        run.stdout
            .contains("2 threads leaked by `plain_tokio::fixture_plain_tokio_forgotten_runtime`"),
        "{}",
        run.stdout
    );
}
