//! Task leaks: each classic leak is caught in current_thread and multi_thread runtimes, each fix
//! passes, and each build mode gives the detail it promises.

use crate::common;

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{run_ignored, LEAK_SETTLE};
use leakcheck::{leak_test, LeakError, Options};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinSet;

/// Runs `scenario` on a fresh runtime of each flavor; it returns the check's error and a release.
fn in_both_flavors<F, Fut>(scenario: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = ()>,
{
    for multi in [false, true] {
        let runtime = if multi {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
        } else {
            tokio::runtime::Builder::new_current_thread().enable_all().build()
        }
        .unwrap();
        runtime.block_on(scenario());
    }
}

async fn find_leak() -> LeakError {
    Options::new()
        .settle(LEAK_SETTLE)
        .find_async()
        .await
        .expect_err("the leak must be caught")
}

#[inline(never)]
async fn send_replies(replies: mpsc::Sender<u32>) {
    for reply in 0.. {
        if replies.send(reply).await.is_err() {
            return;
        }
    }
}

/// Tasks blocked sending on a bounded channel whose receiver is held but never read.
#[test]
fn blocked_bounded_send_is_caught() {
    in_both_flavors(|| async {
        let (replies, inbox) = mpsc::channel(1);
        let task = tokio::spawn(send_replies(replies));
        let error = find_leak().await;
        assert_eq!(error.tasks(), 1, "{error}");
        drop(inbox);
        task.await.unwrap();
    });
}

#[inline(never)]
async fn listen(mut events: mpsc::UnboundedReceiver<String>) {
    while events.recv().await.is_some() {}
}

/// Tasks blocked receiving while the sender sits in a registry that is never closed.
#[test]
fn receiver_with_sender_in_registry_is_caught() {
    in_both_flavors(|| async {
        let registry: Arc<Mutex<Vec<mpsc::UnboundedSender<String>>>> = Arc::default();
        let (events, inbox) = mpsc::unbounded_channel();
        registry.lock().unwrap().push(events);
        let tasks: Vec<_> = (0..3)
            .map(|_| tokio::spawn(listen_one(registry.clone())))
            .collect();
        let listener = tokio::spawn(listen(inbox));
        let error = find_leak().await;
        assert_eq!(error.tasks(), 4, "{error}");
        registry.lock().unwrap().clear();
        listener.await.unwrap();
        for task in tasks {
            task.await.unwrap();
        }
    });
}

async fn listen_one(registry: Arc<Mutex<Vec<mpsc::UnboundedSender<String>>>>) {
    let (events, inbox) = mpsc::unbounded_channel();
    registry.lock().unwrap().push(events);
    listen(inbox).await;
}

#[inline(never)]
async fn external_call(answer: oneshot::Receiver<u32>) -> u32 {
    answer.await.unwrap_or(0)
}

/// A request handler that spawns a task whose external call never completes, and returns.
#[test]
fn fire_and_forget_call_is_caught() {
    in_both_flavors(|| async {
        let (answer, pending) = oneshot::channel();
        // The handler returns at once; the call it spawned lives on.
        let handle_request = || {
            tokio::spawn(external_call(pending));
        };
        handle_request();
        let error = find_leak().await;
        assert_eq!(error.tasks(), 1, "{error}");
        let _ = answer.send(1);
    });
}

#[inline(never)]
async fn fetch_loop(mut updates: mpsc::Receiver<u32>, cleanup: watch::Receiver<bool>) {
    loop {
        let _ = updates.try_recv(); // ignores `Disconnected`
        if *cleanup.borrow() {
            return; // only the test's own clean-up stops it
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// A fetch loop that ignores its closed receiver and loops forever.
#[test]
fn fetch_loop_ignoring_closed_receiver_is_caught() {
    in_both_flavors(|| async {
        let (updates, inbox) = mpsc::channel::<u32>(8);
        drop(updates);
        let (cleanup, stop) = watch::channel(false);
        let task = tokio::spawn(fetch_loop(inbox, stop));
        let error = find_leak().await;
        assert_eq!(error.tasks(), 1, "{error}");
        #[cfg(tokio_unstable)]
        let _ = &error; // spawn sites need a runtime leakcheck built: see the fixtures below
        cleanup.send(true).unwrap();
        task.await.unwrap();
    });
}

/// A task that was alive before the check's baseline is not reported.
#[test]
fn ignore_current_baseline_hides_earlier_tasks() {
    in_both_flavors(|| async {
        let (release, wait) = oneshot::channel::<()>();
        let earlier = tokio::spawn(async move {
            let _ = wait.await;
        });
        let options = Options::new().settle(LEAK_SETTLE).ignore_current();
        options.find_async().await.unwrap();
        let _ = release.send(());
        earlier.await.unwrap();
    });
}

// ---- The attribute, end to end: fixtures (ignored in normal runs) and the tests that run them.

/// Fixture: a fetch loop leaked by an async `#[leak_test]` (current_thread).
#[leak_test(settle = "300ms")]
#[ignore = "fixture, run by fetch_loop_leak_fails_the_test"]
async fn fixture_fetch_loop_current_thread() {
    let (updates, inbox) = mpsc::channel::<u32>(8);
    drop(updates);
    let (_cleanup, stop) = watch::channel(false);
    tokio::spawn(fetch_loop(inbox, stop));
}

/// Fixture: the same leak on a multi_thread runtime.
#[leak_test(settle = "300ms", flavor = "multi_thread", worker_threads = 2)]
#[ignore = "fixture, run by fetch_loop_leak_fails_the_test"]
async fn fixture_fetch_loop_multi_thread() {
    let (updates, inbox) = mpsc::channel::<u32>(8);
    drop(updates);
    let (_cleanup, stop) = watch::channel(false);
    tokio::spawn(fetch_loop(inbox, stop));
}

/// An async `#[leak_test]` fails on a leaked task, in both flavors, with the detail its build
/// mode promises: a count (stable), a spawn site (`tokio_unstable`), the stuck function
/// (`taskdump`).
#[test]
fn fetch_loop_leak_fails_the_test() {
    for fixture in [
        "fixture_fetch_loop_current_thread",
        "fixture_fetch_loop_multi_thread",
    ] {
        let run = run_ignored(fixture, &[]);
        assert!(!run.success, "{fixture} must fail:\n{}", run.stdout);
        let report = &run.stdout;
        assert!(
            report.contains(&format!("leakcheck: 1 task leaked by `tasks::{fixture}`")),
            "{report}"
        );
        if cfg!(tokio_unstable) {
            assert!(report.contains("spawned at tests/it/tasks.rs:"), "{report}");
        } else {
            assert!(report.contains("--cfg tokio_unstable"), "{report}");
        }
        if cfg!(all(tokio_unstable, feature = "taskdump")) {
            assert!(report.contains("stuck in   it::tasks::fetch_loop"), "{report}");
        }
        // The whole report of the stable build (the other builds add detail, checked above).
        #[cfg(not(tokio_unstable))]
        {
            let report = common::failure_section(report, &common::test_path(fixture));
            common::report_settings().bind(|| insta::assert_snapshot!(fixture, report.trim()));
        }
    }
}

/// Fixture: a `spawn_blocking` closure that never returns.
#[leak_test(settle = "300ms")]
#[ignore = "fixture, run by stuck_spawn_blocking_is_reported_without_hanging"]
async fn fixture_stuck_spawn_blocking() {
    tokio::task::spawn_blocking(|| loop {
        std::thread::park();
    });
}

/// A `spawn_blocking` closure that never returns is reported as a leaked thread, and the test
/// ends instead of hanging in the runtime's shutdown.
#[test]
fn stuck_spawn_blocking_is_reported_without_hanging() {
    let run = run_ignored("fixture_stuck_spawn_blocking", &[]);
    assert!(!run.success, "{}", run.stdout);
    assert!(
        run.stdout
            .contains("leakcheck: 1 thread leaked by `tasks::fixture_stuck_spawn_blocking`"),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("\"tokio-rt-worker\""), "{}", run.stdout);
}

/// Fixture: a leaking test that also panics.
#[leak_test(settle = "300ms")]
#[ignore = "fixture, run by original_panic_wins_over_the_leak"]
async fn fixture_leak_and_panic() {
    tokio::spawn(std::future::pending::<()>());
    panic!("the original failure");
}

/// The original panic is what a failing test reports; the leak is added as a note.
#[test]
fn original_panic_wins_over_the_leak() {
    let run = run_ignored("fixture_leak_and_panic", &[]);
    assert!(!run.success);
    let all = format!("{}{}", run.stdout, run.stderr);
    assert!(all.contains("the original failure"), "{all}");
    assert!(
        all.contains("note: the test panicked (its panic is reported above) and also leaked"),
        "{all}"
    );
}

// ---- Fixes that pass.

/// A fetch loop cancelled through a `watch` signal; its handle is never awaited.
#[leak_test]
async fn fetch_loop_cancelled_by_watch_passes() {
    let (stop, mut stopped) = watch::channel(false);
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = stopped.changed() => return,
                _ = tokio::time::sleep(Duration::from_millis(5)) => {}
            }
        }
    });
    tokio::time::sleep(Duration::from_millis(20)).await;
    stop.send(true).unwrap();
}

/// A loop that stops when its receiver's senders are dropped.
#[leak_test(flavor = "multi_thread", worker_threads = 2)]
async fn loop_ending_when_senders_drop_passes() {
    let (updates, mut inbox) = mpsc::channel::<u32>(8);
    let task = tokio::spawn(async move { while inbox.recv().await.is_some() {} });
    updates.send(1).await.unwrap();
    drop(updates);
    task.await.unwrap();
}

/// A done channel with `select!`.
#[leak_test]
async fn done_channel_with_select_passes() {
    let (done, mut finished) = oneshot::channel::<()>();
    let (work, mut inbox) = mpsc::channel::<u32>(8);
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = &mut finished => return,
                Some(_) = inbox.recv() => {}
            }
        }
    });
    work.send(1).await.unwrap();
    done.send(()).unwrap();
}

/// A timeout around a slow future.
#[leak_test]
async fn timeout_around_slow_future_passes() {
    let slow = tokio::time::sleep(Duration::from_secs(60));
    assert!(tokio::time::timeout(Duration::from_millis(10), slow)
        .await
        .is_err());
}

/// A timeout that aborts a spawned call.
#[leak_test(flavor = "multi_thread")]
async fn timeout_aborting_a_spawned_call_passes() {
    let call = tokio::spawn(std::future::pending::<()>());
    let abort = call.abort_handle();
    if tokio::time::timeout(Duration::from_millis(10), call)
        .await
        .is_err()
    {
        abort.abort();
    }
}

/// A graceful shutdown of several workers with a `JoinSet`.
#[leak_test]
async fn joinset_graceful_shutdown_passes() {
    let (stop, _) = tokio::sync::broadcast::channel::<()>(1);
    let mut workers = JoinSet::new();
    for _ in 0..4 {
        let mut stopped = stop.subscribe();
        workers.spawn(async move {
            let _ = stopped.recv().await;
        });
    }
    stop.send(()).unwrap();
    while workers.join_next().await.is_some() {}
}

/// A task that finishes 100 ms after the body is given time to finish.
#[leak_test]
async fn task_finishing_after_the_body_passes() {
    tokio::spawn(tokio::time::sleep(Duration::from_millis(100)));
}

/// A `spawn_blocking` that finishes 100 ms after the body is given time to finish.
#[leak_test]
async fn spawn_blocking_finishing_after_the_body_passes() {
    tokio::task::spawn_blocking(|| std::thread::sleep(Duration::from_millis(100)));
}

/// A plain `#[tokio::test]` under `#[leak_test]` whose task is awaited.
#[leak_test]
#[tokio::test]
async fn tokio_test_under_leak_test_passes() {
    let task = tokio::spawn(async { 40 + 2 });
    assert_eq!(task.await.unwrap(), 42);
}

/// `#[tokio::test]`'s arguments are honoured under `#[leak_test]`.
#[leak_test]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokio_test_multi_thread_under_leak_test_passes() {
    assert_eq!(tokio::runtime::Handle::current().metrics().num_workers(), 2);
    tokio::spawn(async {}).await.unwrap();
}

/// `start_paused` makes the clock auto-advance; a long sleep finishes at once.
#[leak_test(start_paused = true)]
async fn start_paused_passes() {
    let started = tokio::time::Instant::now();
    tokio::spawn(tokio::time::sleep(Duration::from_secs(3600)))
        .await
        .unwrap();
    assert!(started.elapsed() >= Duration::from_secs(3600));
}

/// `verify_none_async()` inside a plain `#[tokio::test]` passes after its task is awaited, and
/// does not count the runtime's own worker threads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_none_async_in_tokio_test_passes() {
    tokio::spawn(async {}).await.unwrap();
    leakcheck::verify_none_async().await;
}

/// `verify_none_async()` catches a task leaked in a plain `#[tokio::test]`.
#[tokio::test]
async fn verify_none_async_in_tokio_test_catches_a_task() {
    let task = tokio::spawn(std::future::pending::<()>());
    let error = Options::new()
        .settle(LEAK_SETTLE)
        .find_async()
        .await
        .expect_err("leak");
    assert_eq!(error.tasks(), 1, "{error}");
    task.abort();
}

/// `ignore_spawn_site` hides the tasks spawned at that site and nothing else (spawn sites need
/// `--cfg tokio_unstable` and a runtime that leakcheck built).
#[cfg(tokio_unstable)]
#[leak_test]
async fn ignore_spawn_site_hides_only_that_site() {
    let kept = tokio::spawn(std::future::pending::<()>());
    let ignored = tokio::spawn(std::future::pending::<()>());
    let report = Options::new()
        .settle(LEAK_SETTLE)
        .find_async()
        .await
        .unwrap_err()
        .to_string();
    let sites: Vec<String> = report
        .lines()
        .filter_map(|line| line.trim().strip_prefix("spawned at "))
        // `tests/tasks.rs:401 in tasks::f, called from ...`: the site is the first word.
        .filter_map(|rest| rest.split(' ').next())
        .map(String::from)
        .collect();
    assert_eq!(sites.len(), 2, "{report}");
    let line = |site: &String| site.rsplit(':').next().and_then(|n| n.parse::<u32>().ok());
    let ignored_site = sites.iter().max_by_key(|site| line(site)).unwrap(); // the second spawn
    let error = Options::new()
        .settle(LEAK_SETTLE)
        .ignore_spawn_site(ignored_site)
        .find_async()
        .await
        .expect_err("the other task is still reported");
    assert_eq!(error.tasks(), 1, "{error}");
    assert!(!error.to_string().contains(ignored_site.as_str()), "{error}");
    kept.abort();
    ignored.abort();
}
