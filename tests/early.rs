//! Own binary: the early verdict watches every thread of the process, so its in-process cases
//! must not share it with other tests' threads.
//!
//! The early verdict: each leak path fails before the settle deadline, saying why, and work that
//! ends within the settle still passes; the attribute's fixtures re-run this binary one test per
//! process, as `cargo nextest` does.

#[path = "it/common/mod.rs"]
mod common;

use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use common::run_ignored;
use leakcheck::{leak_test, LeakError, Options};

/// What a report says when the early verdict ended the wait.
const EARLY: &str = "stopped waiting before the settle deadline";

/// A settle deadline far enough that an early verdict is the only way to fail soon, and work
/// that lingers for a second passes on a loaded machine.
const SETTLE: Duration = Duration::from_secs(5);

fn options() -> Options {
    Options::new().settle(SETTLE)
}

/// The check fails, and its report says the early verdict ended the wait.
fn assert_early(verdict: Result<(), LeakError>) {
    let report = verdict.expect_err("the leak must be caught").to_string();
    assert!(report.contains(EARLY), "{report}");
    assert!(
        report.contains("no wake-up due before the settle deadline"),
        "{report}"
    );
}

/// A thread parked in `recv` for good, released by the returned sender.
fn parked_in_recv() -> mpsc::Sender<()> {
    let (release, inbox) = mpsc::channel::<()>();
    thread::spawn(move || inbox.recv());
    release
}

/// Runs `body` inside a fresh runtime of the given flavor.
fn in_runtime<T>(multi: bool, body: impl std::future::Future<Output = T>) -> T {
    let runtime = match multi {
        true => tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build(),
        false => tokio::runtime::Builder::new_current_thread().enable_all().build(),
    };
    runtime.unwrap().block_on(body)
}

/// A thread in an untimed wait fails early.
#[test]
fn thread_in_untimed_wait_fails_early() {
    let release = parked_in_recv();
    assert_early(options().find());
    drop(release);
}

/// A thread in a 30-s timed wait (an absolute futex deadline) and one in a 30-s sleep (a
/// relative one) fail early: neither wakes by itself before the deadline.
#[test]
fn threads_in_long_timed_waits_fail_early() {
    let (release, inbox) = mpsc::channel::<()>();
    thread::spawn(move || inbox.recv_timeout(Duration::from_secs(30)));
    let (wake, sleeper) = mpsc::channel::<()>();
    let sleeper = thread::spawn(move || sleeper.recv_timeout(Duration::from_secs(30)));
    thread::spawn(|| thread::sleep(Duration::from_secs(30)));
    assert_early(options().find());
    drop((release, wake));
    sleeper.join().unwrap().unwrap_err();
}

/// Tasks that only their runtime could wake fail early in both flavors: `pending()`, a 30-s
/// interval, a server in `accept`.
#[test]
fn idle_tasks_fail_early() {
    for multi in [false, true] {
        in_runtime(multi, async {
            let pending = tokio::spawn(std::future::pending::<()>());
            let interval = tokio::spawn(async {
                let mut every = tokio::time::interval(Duration::from_secs(30));
                loop {
                    every.tick().await;
                }
            });
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let server = tokio::spawn(async move {
                while let Ok((socket, _)) = listener.accept().await {
                    drop(socket);
                }
            });
            assert_early(options().find_async().await);
            for task in [pending, interval, server] {
                task.abort();
            }
        });
    }
}

/// An untimed wait that a lingering thread ends 700 ms later passes: the lingering thread's
/// sleep is due before the deadline, so the scope may still change.
#[test]
fn worker_released_by_a_lingering_thread_passes() {
    let release = parked_in_recv();
    thread::spawn(move || {
        thread::sleep(Duration::from_millis(700));
        drop(release);
    });
    options().find().unwrap();
}

/// A thread sleeping 1 s passes.
#[test]
fn thread_sleeping_a_second_passes() {
    thread::spawn(|| thread::sleep(Duration::from_secs(1)));
    options().find().unwrap();
}

/// A task whose 1-s sleep ends passes in both flavors; so does a connection handler whose
/// client hangs up 500 ms after the body (mini-redis's handlers).
#[test]
fn tasks_that_end_within_the_settle_pass() {
    for multi in [false, true] {
        in_runtime(multi, async {
            tokio::spawn(tokio::time::sleep(Duration::from_secs(1)));
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let address = listener.local_addr().unwrap();
            tokio::spawn(async move {
                let (mut socket, _) = listener.accept().await.unwrap();
                let mut buffer = [0; 16];
                while tokio::io::AsyncReadExt::read(&mut socket, &mut buffer)
                    .await
                    .unwrap_or(0)
                    > 0
                {}
            });
            let client = tokio::net::TcpStream::connect(address).await.unwrap();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(500)).await;
                drop(client);
            });
            options().find_async().await.unwrap();
        });
    }
}

/// A running child process the test started keeps the whole settle, for its thread too: the
/// child's waits are not read, and a thread may be reading its pipe.
#[test]
fn running_child_keeps_the_whole_settle() {
    let release = parked_in_recv();
    let mut child = std::process::Command::new("sleep").arg("30").spawn().unwrap();
    let settle = Duration::from_millis(300);
    let report = Options::new().settle(settle).find().unwrap_err().to_string();
    assert!(!report.contains(EARLY), "{report}");
    assert!(report.contains("waited 300ms for them to finish"), "{report}");
    let _ = child.kill();
    let _ = child.wait();
    drop(release);
}

/// With the early verdict off, the same leak waits the whole deadline and says so.
#[test]
fn early_verdict_off_waits_the_deadline() {
    let run = run_ignored("fixture_thread_leak", &[("LEAKCHECK_EARLY", "off")]);
    assert!(!run.success);
    assert!(!run.stdout.contains(EARLY), "{}", run.stdout);
    assert!(
        run.stdout.contains("waited 1s for them to finish"),
        "{}",
        run.stdout
    );
}

/// The attribute's sync and async checks fail early, also one test per process (nextest).
#[test]
fn attribute_fails_early() {
    for fixture in ["fixture_thread_leak", "fixture_task_leak"] {
        for envs in [&[][..], &[("NEXTEST_EXECUTION_MODE", "process-per-test")][..]] {
            let run = run_ignored(fixture, envs);
            assert!(!run.success, "{fixture} {envs:?}");
            assert!(run.stdout.contains(EARLY), "{fixture} {envs:?}: {}", run.stdout);
        }
    }
}

/// Fixture: leaks a thread parked for good.
#[leak_test(settle = "1s")]
#[ignore = "fixture, run by early_verdict_off_waits_the_deadline and attribute_fails_early"]
fn fixture_thread_leak() {
    std::mem::forget(parked_in_recv());
}

/// Fixture: leaks a server task in `accept`.
#[leak_test(settle = "5s")]
#[ignore = "fixture, run by attribute_fails_early"]
async fn fixture_task_leak() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            drop(socket);
        }
    });
}

/// A mini-redis-style test body: a server task in `accept` with a handler per connection, a
/// purge task waiting on a `Notify` that only the server's end fires, and a client that makes
/// three round trips. The server and the purge task are left running (the leak).
async fn server_round_trips() {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let shutdown = std::sync::Arc::new(tokio::sync::Notify::new());
    let purge = shutdown.clone();
    tokio::spawn(async move { purge.notified().await });
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (read, mut write) = socket.into_split();
                let mut lines = BufReader::new(read).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    write.write_all(format!("+{line}\n").as_bytes()).await.unwrap();
                }
            });
        }
        shutdown.notify_one();
    });
    let (read, mut write) = tokio::net::TcpStream::connect(address)
        .await
        .unwrap()
        .into_split();
    let mut replies = BufReader::new(read).lines();
    for key in ["a", "b", "c"] {
        write.write_all(format!("GET {key}\n").as_bytes()).await.unwrap();
        assert_eq!(replies.next_line().await.unwrap().unwrap(), format!("+GET {key}"));
    }
}

/// 14 tests with that body, under `#[leak_test]` (`suite_checked_*`, which fail) and under
/// `#[tokio::test]` (`suite_plain_*`): the suite `examples/time_to_fail.rs` times.
macro_rules! suite {
    ($($checked:ident $plain:ident),*) => {$(
        /// Benchmark fixture: a leaking mini-redis-style test, checked.
        #[leak_test]
        #[ignore = "benchmark fixture, run by examples/time_to_fail.rs"]
        async fn $checked() {
            server_round_trips().await;
        }

        /// Benchmark fixture: the same test, unchecked.
        #[tokio::test]
        #[ignore = "benchmark fixture, run by examples/time_to_fail.rs"]
        async fn $plain() {
            server_round_trips().await;
        }
    )*};
}

suite!(
    suite_checked_01 suite_plain_01, suite_checked_02 suite_plain_02, suite_checked_03 suite_plain_03,
    suite_checked_04 suite_plain_04, suite_checked_05 suite_plain_05, suite_checked_06 suite_plain_06,
    suite_checked_07 suite_plain_07, suite_checked_08 suite_plain_08, suite_checked_09 suite_plain_09,
    suite_checked_10 suite_plain_10, suite_checked_11 suite_plain_11, suite_checked_12 suite_plain_12,
    suite_checked_13 suite_plain_13, suite_checked_14 suite_plain_14
);
