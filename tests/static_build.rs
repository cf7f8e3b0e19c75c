//! Own binary: CI builds it alone with `+crt-static` (`scripts/static_verdicts.py`).
//!
//! Fixtures for the `+crt-static` build, run by CI one test per process
//! (`scripts/static_verdicts.py`): there `pthread_create` cannot be interposed, so every check
//! uses the process diff and says so. In a normal build they run like any other fixture.

#[path = "it/common/mod.rs"]
mod common;

use std::sync::mpsc;
use std::thread;

use leakcheck::leak_test;

/// Fixture: spawns and joins threads, a scoped one too.
#[leak_test]
#[ignore = "fixture, run by scripts/static_verdicts.py"]
fn fixture_static_clean() {
    thread::spawn(|| ()).join().unwrap();
    thread::scope(|scope| {
        scope.spawn(|| ());
    });
}

/// Fixture: leaks a named thread.
#[leak_test(settle = "200ms")]
#[ignore = "fixture, run by scripts/static_verdicts.py"]
fn fixture_static_leak() {
    common::leak_named_thread("static-leak");
}

/// Fixture: a plain test that leaks, checked with `verify_none()` (baseline: process start-up).
#[test]
#[ignore = "fixture, run by scripts/static_verdicts.py"]
fn fixture_static_verify_none_leak() {
    let (keep, wait) = mpsc::channel::<()>();
    thread::Builder::new()
        .name("static-verify".into())
        .spawn(move || {
            let _ = wait.recv();
        })
        .unwrap();
    std::mem::forget(keep);
    leakcheck::Options::new()
        .settle(std::time::Duration::from_millis(200))
        .verify_none();
}

/// Fixture: a plain test that joins what it starts, checked with `verify_none()`.
#[test]
#[ignore = "fixture, run by scripts/static_verdicts.py"]
fn fixture_static_verify_none_clean() {
    thread::spawn(|| ()).join().unwrap();
    leakcheck::verify_none();
}

/// Threads can be started whatever the build (a static build used to fail every creation).
#[test]
fn threads_start_in_this_build() {
    let handles: Vec<_> = (0..4).map(|i| thread::spawn(move || i * 2)).collect();
    let sum: i32 = handles.into_iter().map(|h| h.join().unwrap()).sum();
    assert_eq!(sum, 12);
}
