//! Ignore rules hide exactly what they name; a lazily started global pool needs none.

use crate::common;

use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Mutex, OnceLock};
use std::thread::{self, JoinHandle};

use common::LEAK_SETTLE;
use leakcheck::Options;

/// A thread blocked until released, named `name`, stuck in `wait_for_release`.
struct Blocked {
    release: Sender<()>,
    handle: JoinHandle<()>,
}

#[inline(never)]
fn wait_for_release(release: Receiver<()>) {
    let _ = release.recv();
}

#[inline(never)]
fn wait_elsewhere(release: Receiver<()>) {
    let _ = release.recv();
}

#[inline(never)]
fn start_blocked(name: &str) -> Blocked {
    let (release, wait) = mpsc::channel();
    let handle = thread::Builder::new()
        .name(name.into())
        .spawn(move || wait_for_release(wait))
        .unwrap();
    Blocked { release, handle }
}

#[inline(never)]
fn start_blocked_elsewhere(name: &str) -> Blocked {
    let (release, wait) = mpsc::channel();
    let handle = thread::Builder::new()
        .name(name.into())
        .spawn(move || wait_elsewhere(wait))
        .unwrap();
    Blocked { release, handle }
}

impl Blocked {
    fn release(self) {
        drop(self.release);
        self.handle.join().unwrap();
    }
}

/// Checks with `options` while `kept` and `ignored` leak: only `kept` may be reported.
fn only_kept_is_reported(options: Options, kept: &str) {
    let error = options
        .settle(LEAK_SETTLE)
        .find()
        .expect_err("the kept leak is reported");
    assert_eq!(error.threads(), 1, "{error}");
    assert!(error.to_string().contains(&format!("\"{kept}\"")), "{error}");
}

/// `ignore_thread` with an exact name hides that thread only.
#[test]
fn ignore_thread_exact() {
    let (a, b) = (start_blocked("logger"), start_blocked("worker"));
    only_kept_is_reported(Options::new().ignore_thread("logger"), "worker");
    a.release();
    b.release();
}

/// `ignore_thread` with a glob hides the matching threads only.
#[test]
fn ignore_thread_glob() {
    let (a, b, c) = (
        start_blocked("pool-1"),
        start_blocked("pool-2"),
        start_blocked("spool"),
    );
    only_kept_is_reported(Options::new().ignore_thread("pool-*"), "spool");
    a.release();
    b.release();
    c.release();
}

/// `ignore_top_function` hides threads stuck in that function, not others.
#[test]
fn ignore_top_function() {
    let (a, b) = (start_blocked("top-a"), start_blocked_elsewhere("top-b"));
    only_kept_is_reported(
        Options::new().ignore_top_function("ignore::wait_for_release"),
        "top-b",
    );
    a.release();
    b.release();
}

/// `ignore_any_function` hides threads with that function anywhere in the stack.
#[test]
fn ignore_any_function() {
    let (a, b) = (start_blocked("any-a"), start_blocked_elsewhere("any-b"));
    only_kept_is_reported(Options::new().ignore_any_function("wait_elsewhere"), "any-a");
    a.release();
    b.release();
}

/// `ignore_creator` by function hides threads created there.
#[test]
fn ignore_creator_function() {
    let (a, b) = (start_blocked("creator-a"), start_blocked_elsewhere("creator-b"));
    only_kept_is_reported(
        Options::new().ignore_creator("ignore::start_blocked"),
        "creator-b",
    );
    a.release();
    b.release();
}

/// `ignore_creator` by site (file:line) hides threads created at that line.
#[test]
fn ignore_creator_site() {
    let (a, b) = (start_blocked("site-a"), start_blocked_elsewhere("site-b"));
    // The site as the report gives it, then that site as a rule.
    let error = Options::new().settle(LEAK_SETTLE).find().unwrap_err().to_string();
    let site = error
        .lines()
        .filter(|l| l.contains("created at tests/it/ignore.rs:") && l.contains("start_blocked_elsewhere"))
        .map(|l| {
            l.split("created at ")
                .nth(1)
                .unwrap()
                .split(' ')
                .next()
                .unwrap()
                .to_string()
        })
        .next()
        .expect("creation site of site-b");
    only_kept_is_reported(Options::new().ignore_creator(&site), "site-a");
    a.release();
    b.release();
}

/// `ignore_current` takes what is alive now as baseline; what starts later is still reported.
#[test]
fn ignore_current_baseline() {
    let before = start_blocked("before");
    let options = Options::new().ignore_current();
    let after = start_blocked("after");
    only_kept_is_reported(options, "after");
    before.release();
    after.release();
}

/// Verbose reports list what the rules hid, with the rule.
#[test]
fn verbose_report_lists_hidden() {
    let (a, b) = (start_blocked("hidden-one"), start_blocked("shown-one"));
    let error = Options::new()
        .settle(LEAK_SETTLE)
        .ignore_thread("hidden-*")
        .verbose(true)
        .find()
        .unwrap_err();
    let report = error.to_string();
    assert!(report.contains("hidden by ignore rules:"), "{report}");
    assert!(
        report.contains("\"hidden-one\"") && report.contains("ignore_thread(\"hidden-*\")"),
        "{report}"
    );
    a.release();
    b.release();
}

// ---- A lazily started global worker pool: a singleton of the process, no rule needed.

type Pool = Mutex<Sender<Box<dyn FnOnce() + Send>>>;

#[inline(never)]
fn start_pool() -> Pool {
    let (jobs, inbox) = mpsc::channel::<Box<dyn FnOnce() + Send>>();
    thread::Builder::new()
        .name("global-pool".into())
        .spawn(move || {
            for job in inbox {
                job();
            }
        })
        .unwrap();
    Mutex::new(jobs)
}

fn run_on(pool: &'static OnceLock<Pool>) {
    let (done, finished) = mpsc::channel();
    pool.get_or_init(start_pool)
        .lock()
        .unwrap()
        .send(Box::new(move || done.send(()).unwrap()))
        .unwrap();
    finished.recv().unwrap();
}

/// Without a rule, the test that starts the global pool is not blamed for its thread: it was
/// created inside a one-time initializer, a singleton of the process.
#[test]
fn global_pool_passes_without_a_rule() {
    static POOL: OnceLock<Pool> = OnceLock::new();
    run_on(&POOL);
    Options::new().settle(LEAK_SETTLE).verify_none();
}

/// The same pool started outside a one-time initializer (and forgotten) is the test's leak.
#[test]
fn pool_outside_an_initializer_is_reported() {
    let pool = start_pool();
    let error = Options::new()
        .settle(LEAK_SETTLE)
        .find()
        .expect_err("the pool thread is reported");
    assert!(error.to_string().contains("\"global-pool\""), "{error}");
    drop(pool);
}

/// Starting the pool in a set-up and taking `ignore_current()` after it accepts the pool.
#[test]
fn global_pool_passes_with_ignore_current() {
    static POOL: OnceLock<Pool> = OnceLock::new();
    POOL.get_or_init(start_pool); // set-up
    let options = Options::new().ignore_current();
    run_on(&POOL);
    options.verify_none();
}

/// A creator rule naming the pool's start function accepts the pool.
#[test]
fn global_pool_passes_with_creator_rule() {
    static POOL: OnceLock<Pool> = OnceLock::new();
    run_on(&POOL);
    Options::new().ignore_creator("ignore::start_pool").verify_none();
}

/// A thread hidden by a rule that needs no stack (name, creator) does not make the check wait
/// for the settle deadline.
#[test]
fn name_rule_does_not_wait_for_the_deadline() {
    let logger = start_blocked("quiet-logger");
    let started = std::time::Instant::now();
    Options::new()
        .settle(std::time::Duration::from_secs(30))
        .ignore_thread("quiet-logger")
        .verify_none();
    assert!(
        started.elapsed() < std::time::Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    logger.release();
}
