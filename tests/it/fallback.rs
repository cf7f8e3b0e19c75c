//! The process-diff fallback (`LEAKCHECK_LINEAGE=off`, or a build where `pthread_create` cannot
//! be interposed): with one test per process it still catches leaks, passes clean tests, and every
//! report says which mode it used.

use crate::common;

use std::sync::mpsc;
use std::thread;

use common::run_ignored;
use leakcheck::leak_test;

/// Fixture: leaks a named thread.
#[leak_test(settle = "200ms")]
#[ignore = "fixture, run by fallback_catches_a_leak_and_says_so"]
fn fixture_fallback_leak() {
    common::leak_named_thread("diffed");
}

/// Fixture: joins what it starts.
#[leak_test]
#[ignore = "fixture, run by fallback_passes_a_clean_test"]
fn fixture_fallback_clean() {
    thread::spawn(|| ()).join().unwrap();
}

/// Fixture: a plain test that leaks, checked with `verify_none()` (baseline: process start-up).
#[test]
#[ignore = "fixture, run by fallback_catches_a_leak_and_says_so"]
fn fixture_fallback_verify_none() {
    let (keep, wait) = mpsc::channel::<()>();
    thread::spawn(move || {
        let _ = wait.recv();
    });
    std::mem::forget(keep);
    leakcheck::Options::new()
        .settle(std::time::Duration::from_millis(200))
        .verify_none();
}

/// Fixture: leaves a child process running (this binary, sleeping a few seconds): caught on every
/// platform that lists children (scripts/platform_verdicts.py compares the verdicts).
#[leak_test(settle = "200ms")]
#[ignore = "fixture, verdict compared across platforms by scripts/platform_verdicts.py"]
fn fixture_fallback_child_leak() {
    use std::process::{Command, Stdio};
    let child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--ignored",
            "--exact",
            &crate::common::test_path("sleeping_child"),
            "--test-threads=1",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::mem::forget(child);
}

/// Not a test: the child `fixture_fallback_child_leak` leaves running.
#[test]
#[ignore = "the child process of fixture_fallback_child_leak"]
fn sleeping_child() {
    thread::sleep(std::time::Duration::from_secs(3));
}

/// In the fallback a leak is still caught, and the report names the weaker mode and its limit.
#[test]
fn fallback_catches_a_leak_and_says_so() {
    for fixture in ["fixture_fallback_leak", "fixture_fallback_verify_none"] {
        let run = run_ignored(fixture, &[("LEAKCHECK_LINEAGE", "off")]);
        assert!(!run.success, "{}", run.stdout);
        assert!(
            run.stdout
                .contains(&format!("leakcheck: 1 thread leaked by `fallback::{fixture}`")),
            "{}",
            run.stdout
        );
        assert!(
            run.stdout
                .contains("compared the process's threads before and after"),
            "{}",
            run.stdout
        );
        assert!(run.stdout.contains("cargo nextest run"), "{}", run.stdout);
    }
}

/// In the fallback a clean test passes.
#[test]
fn fallback_passes_a_clean_test() {
    let run = run_ignored("fixture_fallback_clean", &[("LEAKCHECK_LINEAGE", "off")]);
    assert!(run.success, "{}", run.stdout);
}
