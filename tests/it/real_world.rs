//! Reports on real-world stacks: Book-style pools, forgotten runtimes, waits the
//! kernel classifies, `select!` over several resources, grouping, creation chains, names and
//! locations. Each fixture is re-run with `common::run_ignored` and its report checked.

use crate::common;

use std::net::TcpListener;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use common::run_ignored;
use leakcheck::leak_test;

// ---------------------------------------------------------------- kinds of waits

/// Fixture: four threads, one per kind of wait: untimed (`recv`), timed (`recv_timeout` loop),
/// sleep loop, and IO (`accept()` on a loopback listener).
#[leak_test(settle = "400ms")]
#[ignore = "fixture, run by waits_are_classified_from_the_kernel"]
fn fixture_wait_kinds() {
    let (keep, wait) = mpsc::channel::<()>();
    thread::Builder::new()
        .name("untimed".into())
        .spawn(move || {
            let _ = wait.recv();
        })
        .unwrap();
    std::mem::forget(keep);
    let (keep, wait) = mpsc::channel::<()>();
    thread::Builder::new()
        .name("timed".into())
        .spawn(move || while wait.recv_timeout(Duration::from_secs(60)).is_err() {})
        .unwrap();
    std::mem::forget(keep);
    thread::Builder::new()
        .name("sleeper".into())
        .spawn(|| loop {
            thread::sleep(Duration::from_millis(20));
        })
        .unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    println!("listening on {}", listener.local_addr().unwrap());
    thread::Builder::new()
        .name("acceptor".into())
        .spawn(move || {
            let _ = listener.accept();
        })
        .unwrap();
}

/// Each thread's first line says how it waits, read from the kernel: untimed, timed, a sleep loop,
/// and `accept()` with the listener's address.
#[test]
fn waits_are_classified_from_the_kernel() {
    let run = run_ignored("fixture_wait_kinds", &[]);
    assert!(!run.success);
    let report = &run.stdout;
    let line = |name: &str| crate::common::header_line(report, name);
    assert!(line("untimed").contains("untimed wait"), "{report}");
    assert!(line("timed").contains("timed wait"), "{report}");
    assert!(!line("timed").contains("untimed"), "{report}");
    assert!(line("sleeper").contains("sleep loop"), "{report}");
    let address = report
        .lines()
        .find_map(|line| line.strip_prefix("listening on "))
        .expect("the fixture prints its address");
    assert!(
        line("acceptor").contains(&format!("accept() on {address}")),
        "{address}:\n{report}"
    );
}

// ---------------------------------------------------------------- a Book-style pool

type Job = Box<dyn FnOnce() + Send + 'static>;

/// The Rust Book's worker pool: workers share the receiver behind a mutex.
struct ThreadPool {
    _workers: Vec<thread::JoinHandle<()>>,
    sender: mpsc::Sender<Job>,
}

impl ThreadPool {
    fn new(size: usize) -> ThreadPool {
        let (sender, receiver) = mpsc::channel::<Job>();
        let receiver = Arc::new(Mutex::new(receiver));
        let workers = (0..size)
            .map(|_| {
                let receiver = Arc::clone(&receiver);
                thread::spawn(move || loop {
                    let message = receiver.lock().unwrap().recv();
                    match message {
                        Ok(job) => job(),
                        Err(_) => break,
                    }
                })
            })
            .collect();
        ThreadPool {
            _workers: workers,
            sender,
        }
    }

    fn execute(&self, job: impl FnOnce() + Send + 'static) {
        self.sender.send(Box::new(job)).unwrap();
    }
}

/// Fixture: a Book-style pool that is never shut down (its sender is never dropped).
#[leak_test(settle = "300ms")]
#[ignore = "fixture, run by book_pool_blames_the_open_channel"]
fn fixture_book_pool() {
    let pool = ThreadPool::new(3);
    pool.execute(|| ());
    std::mem::forget(pool);
}

/// Workers in the lock and in `recv` are one diagnosis: the channel's sender was never dropped.
#[test]
fn book_pool_blames_the_open_channel() {
    let run = run_ignored("fixture_book_pool", &[]);
    assert!(!run.success);
    let report = &run.stdout;
    assert!(report.contains("worker pool"), "{report}");
    assert!(report.contains("sender"), "{report}");
    assert!(!report.contains("lock-order deadlock"), "{report}");
}

// ---------------------------------------------------------------- a forgotten runtime

/// Fixture: a multi_thread tokio runtime that is never dropped nor shut down.
#[leak_test(settle = "300ms")]
#[ignore = "fixture, run by forgotten_runtime_is_named"]
fn fixture_forgotten_runtime() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {});
    std::mem::forget(runtime);
}

/// Workers parked in tokio's scheduler are a runtime that was never shut down.
#[test]
fn forgotten_runtime_is_named() {
    let run = run_ignored("fixture_forgotten_runtime", &[]);
    assert!(!run.success);
    let report = &run.stdout;
    assert!(!report.contains("library code only"), "{report}");
    assert!(!report.contains("notifier never came"), "{report}");
    assert_eq!(report.matches('×').count(), 1, "one group:\n{report}");
    assert!(report.contains("×2 threads \"tokio-rt-worker\""), "{report}");
    assert!(
        report.contains("stuck in   tokio::runtime::scheduler::multi_thread::worker::Context::park"),
        "{report}"
    );
    assert!(report.contains("tokio runtime"), "{report}");
    assert!(report.contains("shut"), "{report}");
    assert!(
        report.contains("created at tests/it/real_world.rs:")
            && report.contains("in it::real_world::fixture_forgotten_runtime"),
        "{report}"
    );
}

// ---------------------------------------------------------------- select! over two resources

/// A server loop as applications write it: accept connections until ctrl-c.
async fn serve(listener: tokio::net::TcpListener) {
    loop {
        tokio::select! {
            accepted = listener.accept() => drop(accepted),
            _ = tokio::signal::ctrl_c() => return,
        }
    }
}

/// Fixture: a thread running a server that `select!`s over `accept()` and `ctrl_c()`.
#[leak_test(settle = "300ms")]
#[ignore = "fixture, run by select_names_every_resource"]
fn fixture_select_two_resources() {
    let (ready, started) = mpsc::channel();
    thread::Builder::new()
        .name("server".into())
        .spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                ready.send(listener.local_addr().unwrap()).unwrap();
                serve(listener).await
            })
        })
        .unwrap();
    println!("listening on {}", started.recv().unwrap());
}

/// A thread waiting on several resources at once is reported waiting on all of them.
#[test]
fn select_names_every_resource() {
    let run = run_ignored("fixture_select_two_resources", &[]);
    assert!(!run.success);
    let report = &run.stdout;
    let address = report
        .lines()
        .find_map(|line| line.strip_prefix("listening on "))
        .expect("the fixture prints its address");
    assert!(report.contains(address), "{address}:\n{report}");
    assert!(report.contains("waits on several resources"), "{report}");
}

/// Fixture: a task serving a listener until ctrl-c, left running.
#[leak_test(settle = "300ms")]
#[ignore = "fixture, run by select_task_names_every_resource"]
async fn fixture_select_task() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    tokio::spawn(serve(listener));
}

/// A task in a `select!` over `accept()` and `ctrl_c()` is diagnosed from both branches (with
/// async traces); other builds still report the task.
#[test]
fn select_task_names_every_resource() {
    let run = run_ignored("fixture_select_task", &[]);
    assert!(!run.success);
    let report = &run.stdout;
    assert!(report.contains("1 task"), "{report}");
    if cfg!(all(tokio_unstable, feature = "taskdump")) {
        assert!(report.contains("waits on several resources"), "{report}");
        assert!(report.contains("`listener.accept()`"), "{report}");
        assert!(report.contains("`tokio::signal::ctrl_c()`"), "{report}");
    }
}

// ---------------------------------------------------------------- counter-named workers

/// Fixture: a scheduled pool of two counter-named workers, never shut down.
#[leak_test(settle = "300ms")]
#[ignore = "fixture, run by counter_named_workers_are_grouped"]
fn fixture_counter_named_workers() {
    let pool = scheduled_thread_pool::ScheduledThreadPool::builder()
        .num_threads(2)
        .thread_name_pattern("pool-worker-{}")
        .build();
    std::mem::forget(pool);
}

/// Workers whose names differ by a counter are one group with the name folded into a pattern.
#[test]
fn counter_named_workers_are_grouped() {
    let run = run_ignored("fixture_counter_named_workers", &[]);
    assert!(!run.success);
    let report = &run.stdout;
    assert_eq!(report.matches('×').count(), 1, "one group:\n{report}");
    assert!(report.contains("×2 threads \"pool-worker-{0,1}\""), "{report}");
    assert!(report.contains("ignore_thread = \"pool-worker-*\""), "{report}");
}

// ---------------------------------------------------------------- a creation chain

/// A worker started by a helper, as applications do.
struct Worker;

impl Worker {
    #[inline(never)]
    fn start() -> Worker {
        let (keep, wait) = mpsc::channel::<()>();
        thread::Builder::new()
            .name("app-worker".into())
            .spawn(move || {
                let _ = wait.recv();
            })
            .unwrap();
        std::mem::forget(keep);
        Worker
    }
}

#[inline(never)]
fn start_app() -> Worker {
    Worker::start()
}

/// Fixture: a thread started two helpers down from the test.
#[leak_test(settle = "300ms")]
#[ignore = "fixture, run by creation_chain_reaches_the_test"]
fn fixture_creation_chain() {
    let _worker = start_app();
}

/// The creation site names the spawn and every user frame up to the test's own line.
#[test]
fn creation_chain_reaches_the_test() {
    let run = run_ignored("fixture_creation_chain", &[]);
    assert!(!run.success);
    let report = &run.stdout;
    let created = report
        .lines()
        .find(|line| line.trim_start().starts_with("created at"))
        .unwrap_or_else(|| panic!("{report}"));
    assert!(created.contains("in it::real_world::Worker::start"), "{created}");
    assert!(
        created.contains("called from tests/it/real_world.rs:"),
        "{created}"
    );
    assert!(created.contains("start_app"), "{created}");
    assert!(created.contains("fixture_creation_chain"), "{created}");
    assert!(!report.contains("__leakcheck_body"), "{report}");
}

/// With `RUST_BACKTRACE=1`, a leak prints no backtrace of leakcheck's internals.
#[test]
fn no_backtrace_of_leakcheck_internals() {
    let run = run_ignored("fixture_creation_chain", &[("RUST_BACKTRACE", "1")]);
    assert!(!run.success);
    let all = format!("{}{}", run.stdout, run.stderr);
    assert!(all.contains("leakcheck: 1 thread leaked"), "{all}");
    assert!(!all.contains("stack backtrace:"), "{all}");
    assert!(!all.contains("leakcheck::attribute::conclude"), "{all}");
}

// ---------------------------------------------------------------- tasks

/// Starts a background task that never ends (`pending()`: an empty async trace).
#[inline(never)]
fn start_background() {
    tokio::spawn(std::future::pending::<()>());
}

/// Fixture: a task that awaits `pending()`, spawned through a helper.
#[leak_test(settle = "300ms")]
#[ignore = "fixture, run by pending_task_names_its_spawner"]
async fn fixture_pending_task() {
    start_background();
}

/// A task with an empty async trace still names the function that spawned it and the test line
/// (with `--cfg tokio_unstable`); stable builds report the count and how to get more.
#[test]
fn pending_task_names_its_spawner() {
    let run = run_ignored("fixture_pending_task", &[]);
    assert!(!run.success);
    let report = &run.stdout;
    assert!(report.contains("1 task"), "{report}");
    if cfg!(tokio_unstable) {
        assert!(report.contains("in it::real_world::start_background"), "{report}");
        assert!(
            report.contains("in it::real_world::fixture_pending_task"),
            "{report}"
        );
        assert!(!report.contains("stuck in   nothing"), "{report}");
    } else {
        assert!(report.contains("--cfg tokio_unstable"), "{report}");
    }
    if cfg!(all(feature = "taskdump", not(tokio_unstable))) {
        assert!(!report.contains("enable leakcheck's"), "{report}");
    }
}

/// Fixture: `verify_none_async` in a plain `#[tokio::test]` that leaks a task.
#[tokio::test]
#[ignore = "fixture, run by verify_none_async_points_at_the_caller"]
async fn fixture_verify_none_async_location() {
    tokio::spawn(std::future::pending::<()>());
    leakcheck::Options::new()
        .settle(Duration::from_millis(200))
        .verify_none_async()
        .await;
}

/// A failing `verify_none_async()` panics at the caller's line, not inside leakcheck.
#[test]
fn verify_none_async_points_at_the_caller() {
    let run = run_ignored("fixture_verify_none_async_location", &[]);
    assert!(!run.success);
    let all = format!("{}{}", run.stdout, run.stderr);
    assert!(all.contains("tests/it/real_world.rs:"), "{all}");
    assert!(!all.contains("src/lib.rs:"), "{all}");
    assert!(!all.contains("src/front/verify.rs:"), "{all}");
}

/// Fixture: an rstest case that leaks a thread.
#[leak_test(settle = "200ms")]
#[rstest::rstest]
#[case(1)]
#[ignore = "fixture, run by rstest_case_is_named"]
fn fixture_rstest(#[case] n: u32) {
    common::leak_named_thread(&format!("case-{n}"));
}

/// The report names the rstest case, not only the function.
#[test]
fn rstest_case_is_named() {
    let run = run_ignored("fixture_rstest::case_1", &[]);
    assert!(!run.success, "{}", run.stdout);
    let report = &run.stdout;
    assert!(
        report.contains("leaked by `real_world::fixture_rstest::case_1`"),
        "{report}"
    );
}

// ---------------------------------------------------------------- a one-worker Book-style pool

/// Fixture: the Book's pool with a single worker, never shut down: the worker waits in `recv`
/// holding the lock, and no other worker waits for it.
#[leak_test(settle = "300ms")]
#[ignore = "fixture, run by one_worker_book_pool_blames_the_open_channel"]
fn fixture_book_pool_one_worker() {
    let pool = ThreadPool::new(1);
    pool.execute(|| ());
    std::mem::forget(pool);
}

/// Fixture: plain channel workers: one receives from its own receiver, one holds a guard of
/// other state while it receives from a plain receiver. Neither is a Book-style pool.
#[leak_test(settle = "300ms")]
#[ignore = "fixture, run by plain_channel_worker_keeps_the_channel_hint"]
fn fixture_plain_channel_workers() {
    let (keep, receiver) = mpsc::channel::<Job>();
    thread::Builder::new()
        .name("plain-worker".into())
        .spawn(move || {
            while let Ok(job) = receiver.recv() {
                job();
            }
        })
        .unwrap();
    std::mem::forget(keep);
    let (keep, receiver) = mpsc::channel::<Job>();
    let state = Arc::new(Mutex::new(0u32));
    thread::Builder::new()
        .name("guarded-worker".into())
        .spawn(move || loop {
            let mut done = state.lock().unwrap();
            let message = receiver.recv();
            match message {
                Ok(job) => job(),
                Err(_) => break,
            }
            *done += 1;
        })
        .unwrap();
    std::mem::forget(keep);
}

/// A single Book-style worker, waiting in `recv` on the guard of the shared receiver's lock, gets
/// the Book-pool cause (from the source at its line), not the plain channel hint.
#[test]
fn one_worker_book_pool_blames_the_open_channel() {
    let run = run_ignored("fixture_book_pool_one_worker", &[]);
    assert!(!run.success);
    let report = &run.stdout;
    assert!(report.contains("×1 thread"), "{report}");
    assert!(
        report.contains("cause: a worker pool sharing one receiver behind a mutex"),
        "{report}"
    );
    assert!(
        report
            .contains("`recv` called on the guard of `receiver.lock().unwrap()` at tests/it/real_world.rs:"),
        "{report}"
    );
    assert!(!report.contains("cause: blocked receiving"), "{report}");
}

/// Plain channel workers keep the plain channel hint, also one that holds a guard of other
/// state while it receives.
#[test]
fn plain_channel_worker_keeps_the_channel_hint() {
    let run = run_ignored("fixture_plain_channel_workers", &[]);
    assert!(!run.success);
    let report = &run.stdout;
    assert_eq!(report.matches('×').count(), 2, "{report}");
    assert_eq!(
        report.matches("cause: blocked receiving from a channel").count(),
        2,
        "{report}"
    );
    assert!(!report.contains("worker pool"), "{report}");
}

// ---------------------------------------------------------------- group members that wait differently

/// Waits for an unpark that never comes: forever (`None`), or in a loop of timed waits.
#[inline(never)]
fn wait_for_unpark(timeout: Option<Duration>) {
    loop {
        timeout.map_or_else(thread::park, thread::park_timeout);
    }
}

/// Fixture: three workers started at one site, stuck at one line of one function; one waits
/// with a timeout, two without.
#[leak_test(settle = "300ms")]
#[ignore = "fixture, run by group_members_waiting_differently_are_told_apart"]
fn fixture_mixed_waits() {
    let timeouts = [Some(Duration::from_secs(600)), None, None];
    for (i, timeout) in timeouts.into_iter().enumerate() {
        thread::Builder::new()
            .name(format!("waiter-{i}"))
            .spawn(move || wait_for_unpark(timeout))
            .unwrap();
    }
}

// ---------------------------------------------------------------- tokio task names

/// Fixture: tasks named with a literal, with an expression, and unnamed; all wait forever.
#[cfg(tokio_unstable)]
#[leak_test(settle = "300ms")]
#[ignore = "fixture, run by task_names_are_read_at_the_spawn_site"]
async fn fixture_named_tasks() {
    tokio::task::Builder::new()
        .name("ticker")
        .spawn(std::future::pending::<()>())
        .unwrap();
    for i in 0..2 {
        tokio::task::Builder::new()
            .name(&format!("conn-{i}"))
            .spawn(std::future::pending::<()>())
            .unwrap();
    }
    tokio::spawn(std::future::pending::<()>());
    tokio::task::Builder::new()
        .spawn(std::future::pending::<()>())
        .unwrap();
}

/// A task named by a string literal shows the name; one named by an expression shows the
/// expression, marked as such; unnamed tasks (plain `tokio::spawn`, a builder without `.name`)
/// show no name; the report says where names come from.
#[cfg(tokio_unstable)]
#[test]
fn task_names_are_read_at_the_spawn_site() {
    let run = run_ignored("fixture_named_tasks", &[]);
    assert!(!run.success);
    let report = &run.stdout;
    let headers: Vec<&str> = report.lines().filter(|line| line.starts_with('×')).collect();
    assert_eq!(headers.len(), 4, "{report}");
    assert!(
        headers.iter().any(|h| h.starts_with("×1 task \"ticker\" (id ")),
        "{report}"
    );
    assert!(
        headers
            .iter()
            .any(|h| h.starts_with("×2 tasks named by `format!(\"conn-{i}\")` (ids ")),
        "{report}"
    );
    let unnamed = headers.iter().filter(|h| h.starts_with("×1 task (id ")).count();
    assert_eq!(unnamed, 2, "{report}");
    assert!(
        !report.contains("conn-0") && !report.contains("conn-1"),
        "no made-up value:\n{report}"
    );
    assert!(report.contains("tokio does not expose them"), "{report}");
}

/// Members of one group that wait differently are told apart: the first line counts each wait
/// class, a line per class names its members, and the timed wait's hint names only its member.
#[test]
fn group_members_waiting_differently_are_told_apart() {
    let run = run_ignored("fixture_mixed_waits", &[]);
    assert!(!run.success);
    let report = &run.stdout;
    let header = report
        .lines()
        .find(|line| line.starts_with("×3 threads \"waiter-{0..2}\""))
        .unwrap_or_else(|| panic!("one group of three:\n{report}"));
    assert!(
        header.ends_with(", waits differ: untimed wait (2), timed wait (1)"),
        "{report}"
    );
    let members = |class: &str| {
        report
            .lines()
            .find(|line| line.trim_start().starts_with(class))
            .unwrap_or_else(|| panic!("no line for {class}:\n{report}"))
            .to_string()
    };
    assert!(members("untimed wait (").contains(": tids "), "{report}");
    let timed = members("timed wait (");
    let tid = timed
        .rsplit_once(": tid ")
        .unwrap_or_else(|| panic!("{report}"))
        .1;
    let cause = report
        .lines()
        .find(|line| line.contains("cause") && line.contains("a timed wait: it wakes by itself"))
        .unwrap_or_else(|| panic!("{report}"));
    assert!(
        cause.starts_with(&format!("   cause (for tid {tid}, timed wait): ")),
        "{report}"
    );
    assert_eq!(report.matches("cause").count(), 1, "{report}");
}
