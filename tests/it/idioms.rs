//! Real pools and servers, each a leaky fixture and its fixed twin, with the whole report a user
//! sees pinned as a normalised snapshot: a forgotten rayon pool, a dropped r2d2 pool that still
//! runs its reaper, a bb8 pool's reaper and connection-replenishing tasks, and a mini-redis-style
//! server task with the purge task it spawned.

use std::time::Duration;

use crate::common::run_ignored;
use leakcheck::leak_test;

/// Runs `fixture` (ignored) and returns its report, normalised for a snapshot.
fn report_of(fixture: &str) -> String {
    let run = run_ignored(fixture, &[]);
    assert!(
        !run.success,
        "{fixture} should fail:\n{}{}",
        run.stdout, run.stderr
    );
    let start = run.stdout.find("leakcheck: ").unwrap_or(0);
    let end = run.stdout[start..]
        .find("\nfailures:")
        .map_or(run.stdout.len(), |end| start + end);
    run.stdout[start..end].trim_end().to_owned()
}

/// Runs `fixture` (ignored) and asserts that it passes.
fn assert_passes(fixture: &str) {
    let run = run_ignored(fixture, &[]);
    assert!(
        run.success,
        "{fixture} should pass:\n{}{}",
        run.stdout, run.stderr
    );
}

/// The build mode, as a snapshot suffix: task reports say more with `--cfg tokio_unstable` and
/// more again with `taskdump`.
fn mode() -> &'static str {
    if cfg!(all(tokio_unstable, feature = "taskdump")) {
        "taskdump"
    } else if cfg!(tokio_unstable) {
        "unstable"
    } else {
        "stable"
    }
}

/// Pins `report` as snapshot `name` (per build mode for task reports), with tids, task ids,
/// timings, line numbers of leakcheck's own tests, crate versions and a generic function's
/// arguments (v0 symbol names) replaced.
macro_rules! assert_report {
    // The middle mode (spawn sites, no async traces) is covered by the `contains` checks.
    ($name:expr, $report:expr, per_mode) => {
        if mode() != "unstable" {
            insta::with_settings!({snapshot_suffix => mode()}, { assert_report!($name, $report) })
        }
    };
    ($name:expr, $report:expr) => {
        insta::with_settings!({filters => vec![
            (r"\b(tids?|ids?|tid|pid) [0-9][0-9, ]*", "$1 [N]"),
            (r"\(id [0-9]+\)", "(id [N])"),
            (r"[0-9]+(\.[0-9]+)? ?(ms|s|µs)\b", "[T]"),
            (r"(no wake-up|woke once|woke [0-9]+ times) in", "woke [N] in"),
            (r"\.\.\. [0-9]+ library frames?", "... [N] library frames"),
            (r"\.rs:[0-9]+", ".rs:[L]"),
            (r"(rayon-core|rayon|r2d2|scheduled-thread-pool|bb8|tokio) [0-9]+\.[0-9]+\.[0-9]+", "$1 [V]"),
            (r"127\.0\.0\.1:[0-9]+", "127.0.0.1:[PORT]"),
            (r#"/[^ "]*/registry/src/[^/]+/"#, "[REGISTRY]/"),
            // Whether the settle ended early depends on what else the machine runs.
            (r"note: (waited \[T\] for them to finish|stopped waiting before the settle deadline [^(]*\(\[T\]\)[^(]*)\(settle", "note: [SETTLED] (settle"),
            // v0 symbol names (`-C instrument-coverage`) print a generic function's arguments.
            (r"::<[^\s`]*>", ""),
        ]}, { insta::assert_snapshot!($name, $report) })
    };
}

// ---------------------------------------------------------------- rayon: a forgotten pool

/// Builds a rayon pool, uses it, and hands it back.
fn busy_pool() -> rayon::ThreadPool {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(2)
        .thread_name(|i| format!("forgotten-{i}"))
        .build()
        .unwrap();
    assert_eq!(pool.install(|| rayon::join(|| 1, || 2)), (1, 2));
    pool
}

/// Fixture: a rayon pool built, used, then forgotten: two idle workers.
#[leak_test(settle = "300ms")]
#[ignore = "fixture, run by rayon_forgotten_pool_is_an_idle_pool"]
fn fixture_rayon_forgotten() {
    std::mem::forget(busy_pool());
}

/// Fixture: the same pool, dropped.
#[leak_test(settle = "2s")]
#[ignore = "fixture, run by rayon_forgotten_pool_is_an_idle_pool"]
fn fixture_clean_rayon_dropped() {
    drop(busy_pool());
}

/// A forgotten rayon pool is an idle pool whose handle was never dropped, created at the test's
/// line through rayon's builder; dropping it passes.
#[test]
fn rayon_forgotten_pool_is_an_idle_pool() {
    let report = report_of("fixture_rayon_forgotten");
    assert!(
        report.contains("idle pool whose handle was never dropped"),
        "{report}"
    );
    assert!(
        report.contains("in it::idioms::fixture_rayon_forgotten"),
        "{report}"
    );
    assert_report!("rayon_forgotten", report);
    assert_passes("fixture_clean_rayon_dropped");
}

// ---------------------------------------------------------------- r2d2: a dropped pool

/// A connection manager whose connections cost nothing (r2d2 needs one to build a pool).
struct Free;

impl r2d2::ManageConnection for Free {
    type Connection = ();
    type Error = std::io::Error;
    fn connect(&self) -> Result<(), std::io::Error> {
        Ok(())
    }
    fn is_valid(&self, _: &mut ()) -> Result<(), std::io::Error> {
        Ok(())
    }
    fn has_broken(&self, _: &mut ()) -> bool {
        false
    }
}

/// Fixture: an r2d2 pool built, used and dropped: its workers still run the pending reaper job.
#[leak_test(settle = "300ms")]
#[ignore = "fixture, run by r2d2_dropped_pool_still_runs_scheduled_work"]
fn fixture_r2d2_dropped() {
    let pool = r2d2::Pool::builder().max_size(2).build(Free).unwrap();
    drop(pool.get().unwrap());
    drop(pool);
}

/// Fixture: the same pool on a scheduler that discards pending jobs when dropped.
#[leak_test(settle = "2s")]
#[ignore = "fixture, run by r2d2_dropped_pool_still_runs_scheduled_work"]
fn fixture_clean_r2d2_discarding() {
    use scheduled_thread_pool::{OnPoolDropBehavior, ScheduledThreadPool};
    let scheduler = ScheduledThreadPool::builder()
        .num_threads(3)
        .on_drop_behavior(OnPoolDropBehavior::DiscardPendingScheduled)
        .build();
    let pool = r2d2::Pool::builder()
        .max_size(2)
        .thread_pool(std::sync::Arc::new(scheduler))
        .build(Free)
        .unwrap();
    drop(pool.get().unwrap());
    drop(pool);
}

/// A dropped r2d2 pool whose workers wait for the pending reaper job is named so, with the
/// scheduler's discard switch; building the pool with it passes.
#[test]
fn r2d2_dropped_pool_still_runs_scheduled_work() {
    let report = report_of("fixture_r2d2_dropped");
    assert!(report.contains("DiscardPendingScheduled"), "{report}");
    assert!(!report.contains("drop it or call its shutdown"), "{report}");
    assert_report!("r2d2_dropped", report);
    assert_passes("fixture_clean_r2d2_discarding");
}

/// Fixture: an r2d2 pool the test builds and never drops (a pool in a `static` would be a
/// process-wide singleton, charged to no test): its three workers (`r2d2-worker-{0..2}`) wait on
/// the pool's scheduler, whose reaper runs every 30 s (a timed wait), in library code only.
#[leak_test(settle = "300ms")]
#[ignore = "fixture, run by dependency_pool_names_the_library_frame"]
fn fixture_dependency_pool() {
    let pool = r2d2::Pool::builder().max_size(2).build(Free).unwrap();
    drop(pool.get().unwrap());
    std::mem::forget(pool);
}

/// An all-library stack names the dependency frame where it waits (crate and version), the wait
/// is timed, the three workers are one group with a folded name, and the hint is the pool's
/// scheduled work, with a rule to paste.
#[test]
fn dependency_pool_names_the_library_frame() {
    let run = run_ignored("fixture_dependency_pool", &[]);
    assert!(!run.success);
    let report = &run.stdout;
    assert!(!report.contains("library code only"), "{report}");
    assert!(report.contains("×3 threads \"r2d2-worker-{0..2}\""), "{report}");
    assert!(report.contains("timed wait"), "{report}");
    assert!(
        report.contains("stuck in   scheduled_thread_pool::Worker::get_job (scheduled-thread-pool 0.2"),
        "{report}"
    );
    assert!(
        report.contains("a pool that still runs scheduled work"),
        "{report}"
    );
    assert!(!report.contains("notifier never came"), "{report}");
    assert!(
        report.contains("called from tests/it/idioms.rs:")
            && report.contains("idioms::fixture_dependency_pool"),
        "{report}"
    );
    assert!(
        report.contains("#[leak_test(ignore_thread = \"r2d2-worker-*\")]"),
        "{report}"
    );
}

// ---------------------------------------------------------------- bb8: reaper and replenishers

/// A connection manager whose server is down: every `connect` fails, so bb8 retries.
struct Down;

impl bb8::ManageConnection for Down {
    type Connection = ();
    type Error = std::io::Error;
    async fn connect(&self) -> Result<(), std::io::Error> {
        Err(std::io::Error::from(std::io::ErrorKind::ConnectionRefused))
    }
    async fn is_valid(&self, _: &mut ()) -> Result<(), std::io::Error> {
        Ok(())
    }
    fn has_broken(&self, _: &mut ()) -> bool {
        false
    }
}

/// Fixture: a bb8 pool that keeps two idle connections, dropped while its server is down: the
/// reaper waits for its next 30-s tick, two tasks retry `connect` in a `sleep` loop.
#[leak_test(settle = "300ms")]
#[ignore = "fixture, run by bb8_reaper_and_replenishers_are_bounded"]
async fn fixture_bb8_pool() {
    let pool = bb8::Pool::builder()
        .max_size(2)
        .min_idle(Some(2))
        .build_unchecked(Down);
    tokio::time::sleep(Duration::from_millis(10)).await;
    drop(pool);
}

/// Fixture: the same pool with a short reaper interval and connection timeout.
#[leak_test(settle = "2s")]
#[ignore = "fixture, run by bb8_reaper_and_replenishers_are_bounded"]
async fn fixture_clean_bb8_pool_short() {
    let pool = bb8::Pool::builder()
        .max_size(2)
        .min_idle(Some(2))
        .reaper_rate(Duration::from_millis(50))
        .connection_timeout(Duration::from_millis(300))
        .build_unchecked(Down);
    tokio::time::sleep(Duration::from_millis(10)).await;
    drop(pool);
}

/// bb8's reaper and replenishing tasks are in timed waits, never "can never wake"; shortening
/// the intervals passes.
#[test]
fn bb8_reaper_and_replenishers_are_bounded() {
    let report = report_of("fixture_bb8_pool");
    assert!(!report.contains("can ever wake"), "{report}");
    if cfg!(tokio_unstable) {
        assert!(report.contains("background work of bb8"), "{report}");
    }
    assert_report!("bb8_pool", report, per_mode);
    assert_passes("fixture_clean_bb8_pool_short");
}

// ---------------------------------------------------------------- a mini-redis-style server

/// A key-value server in mini-redis's shape: `run` serves a listener, and its `Db` spawns a purge
/// task that waits on a `Notify` until the `Db` is dropped.
mod server {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    use tokio::io::AsyncWriteExt;
    use tokio::net::TcpListener;
    use tokio::sync::Notify;

    /// The state shared with the purge task.
    struct Shared {
        background_task: Notify,
        shutdown: AtomicBool,
    }

    /// The database: dropping it stops its purge task.
    struct Db {
        shared: Arc<Shared>,
    }

    impl Db {
        fn new() -> Db {
            let shared = Arc::new(Shared {
                background_task: Notify::new(),
                shutdown: AtomicBool::new(false),
            });
            tokio::spawn(purge_expired_tasks(shared.clone()));
            Db { shared }
        }
    }

    impl Drop for Db {
        fn drop(&mut self) {
            self.shared.shutdown.store(true, Ordering::SeqCst);
            self.shared.background_task.notify_one();
        }
    }

    /// Waits until there are keys to expire, or the `Db` is dropped.
    async fn purge_expired_tasks(shared: Arc<Shared>) {
        while !shared.shutdown.load(Ordering::SeqCst) {
            shared.background_task.notified().await;
        }
    }

    /// Serves `listener` until the task is aborted: each connection gets `+PONG`.
    pub async fn run(listener: TcpListener) {
        let _db = Db::new();
        while let Ok((mut socket, _)) = listener.accept().await {
            let _ = socket.write_all(b"+PONG\r\n").await;
        }
    }
}

/// Starts the server on a loopback port and asks it once.
async fn ping(listener: tokio::net::TcpListener) -> tokio::task::JoinHandle<()> {
    use tokio::io::AsyncReadExt;
    let address = listener.local_addr().unwrap();
    let handle = tokio::spawn(server::run(listener));
    let mut client = tokio::net::TcpStream::connect(address).await.unwrap();
    let mut reply = [0; 7];
    client.read_exact(&mut reply).await.unwrap();
    assert_eq!(&reply, b"+PONG\r\n");
    handle
}

/// Fixture: the server task's `JoinHandle` is dropped: it and its purge task outlive the test.
#[leak_test(settle = "300ms")]
#[ignore = "fixture, run by server_task_is_the_root_of_its_purge_task"]
async fn fixture_server_task() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    drop(ping(listener).await);
}

/// Fixture: the same server, aborted through its handle when the test ends.
#[leak_test(settle = "2s")]
#[ignore = "fixture, run by server_task_is_the_root_of_its_purge_task"]
async fn fixture_clean_server_task_aborted() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    ping(listener).await.abort();
}

/// The purge task is shown under the server task it was spawned from, and the fix names the
/// server's dropped `JoinHandle`; aborting it passes.
#[test]
fn server_task_is_the_root_of_its_purge_task() {
    let report = report_of("fixture_server_task");
    if cfg!(tokio_unstable) {
        assert!(report.contains("abort()"), "{report}");
        assert!(report.contains("ends when  task"), "{report}");
    }
    assert_report!("server_task", report, per_mode);
    assert_passes("fixture_clean_server_task_aborted");
}
