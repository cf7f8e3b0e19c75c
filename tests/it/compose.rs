//! `#[leak_test]` composed with the test attributes of the ecosystem, each with a clean case (no
//! false alarm, the other attribute's behaviour kept) and a leaky fixture (the leak is caught):
//! `#[test_log::test]` on sync and async fns (also wrapping `tokio::test(...)`), `#[rstest]` with
//! and without `#[tokio::test]`, and `#[tokio::test(...)]`.

use crate::common;

use std::time::Duration;

use common::{leak_named_thread, run_ignored};
use leakcheck::leak_test;
use rstest::rstest;

/// Whether a logger was installed: test-log's initialisation sets the max level from `Off`.
fn logging_initialised() -> bool {
    log::max_level() > log::LevelFilter::Off
}

/// A task that never finishes.
async fn forever() {
    std::future::pending::<()>().await;
}

/// Runs `fixture` in its own process and returns what it printed, asserting that it failed.
fn failed_run(fixture: &str) -> String {
    let run = run_ignored(fixture, &[("LEAKCHECK_SETTLE", "300ms")]);
    let all = format!("{}{}", run.stdout, run.stderr);
    assert!(!run.success, "{fixture} must fail:\n{all}");
    all
}

// ---- test-log, sync

/// test-log on a sync test: logging is initialised, a clean test passes.
#[leak_test]
#[test_log::test]
fn test_log_sync_clean() {
    assert!(logging_initialised());
    log::error!("logged from a clean test");
    std::thread::spawn(|| ()).join().unwrap();
}

/// Fixture: test-log on a sync test that leaks a thread.
#[leak_test]
#[test_log::test]
#[ignore = "fixture, run by test_log_sync_leak_is_caught"]
fn fixture_test_log_sync_leak() {
    log::error!("log line from the leaky sync fixture");
    leak_named_thread("tl-sync-leak");
}

/// The leak under test-log is caught, and test-log's captured log is still printed.
#[test]
fn test_log_sync_leak_is_caught() {
    let out = failed_run("fixture_test_log_sync_leak");
    assert!(
        out.contains("leakcheck: 1 thread leaked by `compose::fixture_test_log_sync_leak`"),
        "{out}"
    );
    assert!(out.contains("log line from the leaky sync fixture"), "{out}");
}

// ---- test-log, async (wrapping tokio::test)

/// `#[test_log::test(tokio::test)]`: leakcheck takes tokio's runtime over, test-log still
/// initialises logging.
#[leak_test]
#[test_log::test(tokio::test)]
async fn test_log_async_clean() {
    assert!(logging_initialised());
    let task = tokio::spawn(async { 40 + 2 });
    assert_eq!(task.await.unwrap(), 42);
}

/// The same with runtime arguments inside test-log's.
#[leak_test]
#[test_log::test(tokio::test(flavor = "multi_thread", worker_threads = 2))]
async fn test_log_async_multi_thread_clean() {
    assert!(logging_initialised());
    assert_eq!(
        tokio::runtime::Handle::current().runtime_flavor(),
        tokio::runtime::RuntimeFlavor::MultiThread
    );
    tokio::spawn(async {}).await.unwrap();
}

/// Bare `#[test_log::test]` on an async fn: leakcheck supplies the runtime.
#[leak_test]
#[test_log::test]
async fn test_log_bare_async_clean() {
    assert!(logging_initialised());
    tokio::spawn(async {}).await.unwrap();
}

/// `#[tokio::test]` beside `#[test_log::test]` (test-log's other documented form).
#[leak_test]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[test_log::test]
async fn tokio_test_beside_test_log_clean() {
    assert!(logging_initialised());
    tokio::spawn(async {}).await.unwrap();
}

/// Fixture: a task leaked under `#[test_log::test(tokio::test(...))]`.
#[leak_test]
#[test_log::test(tokio::test(flavor = "multi_thread", worker_threads = 2))]
#[ignore = "fixture, run by test_log_async_leak_is_caught"]
async fn fixture_test_log_async_leak() {
    log::error!("log line from the leaky async fixture");
    tokio::spawn(forever());
}

/// The leaked task is caught inside the runtime; the log is printed.
#[test]
fn test_log_async_leak_is_caught() {
    let out = failed_run("fixture_test_log_async_leak");
    assert!(
        out.contains("leakcheck: 1 task leaked by `compose::fixture_test_log_async_leak`"),
        "{out}"
    );
    assert!(out.contains("log line from the leaky async fixture"), "{out}");
}

// ---- rstest

/// rstest cases, each checked on its own.
#[leak_test]
#[rstest]
#[case(1)]
#[case(2)]
fn rstest_clean(#[case] workers: usize) {
    let handles: Vec<_> = (0..workers).map(|_| std::thread::spawn(|| ())).collect();
    for handle in handles {
        handle.join().unwrap();
    }
}

/// Fixture: an rstest case that leaks a thread.
#[leak_test]
#[rstest]
#[case("rs-leak")]
#[ignore = "fixture, run by rstest_leak_is_caught"]
fn fixture_rstest_leak(#[case] name: &str) {
    leak_named_thread(name);
}

/// The rstest case's leak is caught and names the thread.
#[test]
fn rstest_leak_is_caught() {
    let out = failed_run("fixture_rstest_leak::case_1");
    assert!(
        out.contains("1 thread leaked by `compose::fixture_rstest_leak"),
        "{out}"
    );
    assert!(out.contains("rs-leak"), "{out}");
}

// ---- rstest with tokio::test

/// rstest cases on an async fn under `#[tokio::test]`.
#[leak_test]
#[rstest]
#[case(1)]
#[case(3)]
#[tokio::test]
async fn rstest_tokio_clean(#[case] tasks: usize) {
    let handles: Vec<_> = (0..tasks).map(|i| tokio::spawn(async move { i })).collect();
    for handle in handles {
        handle.await.unwrap();
    }
}

/// Fixture: an rstest case under `#[tokio::test]` that leaks a task.
#[leak_test]
#[rstest]
#[case(1)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "fixture, run by rstest_tokio_leak_is_caught"]
async fn fixture_rstest_tokio_leak(#[case] tasks: usize) {
    for _ in 0..tasks {
        tokio::spawn(forever());
    }
}

/// The task leaked by an rstest case under tokio::test is caught.
#[test]
fn rstest_tokio_leak_is_caught() {
    let out = failed_run("fixture_rstest_tokio_leak::case_1");
    assert!(
        out.contains("1 task leaked by `compose::fixture_rstest_tokio_leak"),
        "{out}"
    );
}

// ---- tokio::test

/// `#[tokio::test(...)]` below `#[leak_test]`: its runtime settings are kept.
#[leak_test]
#[tokio::test(start_paused = true)]
async fn tokio_test_clean() {
    let before = tokio::time::Instant::now();
    tokio::time::sleep(Duration::from_secs(3600)).await;
    assert!(before.elapsed() >= Duration::from_secs(3600));
    tokio::spawn(async {}).await.unwrap();
}

/// Fixture: a task and a thread leaked under `#[tokio::test(flavor = "multi_thread")]`.
#[leak_test]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "fixture, run by tokio_test_leak_is_caught"]
async fn fixture_tokio_test_leak() {
    tokio::spawn(forever());
    leak_named_thread("tt-leak");
}

/// Tasks are checked inside the runtime and threads after it: both are reported.
#[test]
fn tokio_test_leak_is_caught() {
    let out = failed_run("fixture_tokio_test_leak");
    assert!(
        out.contains("leakcheck: 1 thread and 1 task leaked by `compose::fixture_tokio_test_leak`"),
        "{out}"
    );
    assert!(out.contains("tt-leak"), "{out}");
}
