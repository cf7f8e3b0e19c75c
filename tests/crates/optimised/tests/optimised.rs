//! leakcheck optimised inside an unoptimised test binary (a profile override for it): verdicts,
//! the report's frames and rules are what they are in a plain debug build.

use std::process::Command;
use std::sync::mpsc::{self, Receiver};
use std::thread;
use std::time::Duration;

use leakcheck::{leak_test, LeakError, Options};

const SETTLE: Duration = Duration::from_millis(300);

#[inline(never)]
fn wait_here(release: Receiver<()>) {
    let _ = release.recv();
}

#[inline(never)]
fn wait_there(release: Receiver<()>) {
    let _ = release.recv();
}

fn find_leak(options: Options) -> LeakError {
    options
        .settle(SETTLE)
        .find()
        .expect_err("the leak must be caught")
}

/// The test binary re-run on one ignored fixture: (passed, stdout and stderr).
fn run_fixture(name: &str) -> (bool, String) {
    let output = Command::new(std::env::current_exe().unwrap())
        .args(["--ignored", "--exact", name, "--test-threads=1"])
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&output.stdout).into_owned() + &String::from_utf8_lossy(&output.stderr);
    (output.status.success(), text)
}

/// A blocked thread is caught, and the report points at this file: where it is stuck, where it
/// was created (leakcheck's own frames, optimised and inlined, are skipped), and its name.
#[test]
fn blocked_thread_is_reported_at_its_lines() {
    let (release, wait) = mpsc::channel::<()>();
    let worker = thread::Builder::new()
        .name("opt-worker".into())
        .spawn(move || wait_here(wait))
        .unwrap();
    let error = find_leak(Options::new());
    let report = error.to_string();
    assert_eq!(error.threads(), 1, "{report}");
    assert!(report.contains("\"opt-worker\""), "{report}");
    assert!(
        report.contains("stuck in   optimised::wait_here at tests/optimised.rs:"),
        "{report}"
    );
    assert!(report.contains("created at tests/optimised.rs:"), "{report}");
    assert!(!report.contains("leakcheck::probe"), "{report}");
    drop(release);
    worker.join().unwrap();
}

/// Rules on the stack hide exactly the threads they name.
#[test]
fn top_function_rule_hides_only_its_thread() {
    let (release_here, wait) = mpsc::channel::<()>();
    let here = thread::spawn(move || wait_here(wait));
    let (release_there, wait) = mpsc::channel::<()>();
    let there = thread::spawn(move || wait_there(wait));
    let error = find_leak(Options::new().ignore_top_function("optimised::wait_here"));
    assert_eq!(error.threads(), 1, "{error}");
    assert!(
        error.to_string().contains("stuck in   optimised::wait_there"),
        "{error}"
    );
    drop((release_here, release_there));
    here.join().unwrap();
    there.join().unwrap();
}

/// A joined thread and an awaited task are no leak.
#[leak_test]
fn joined_thread_passes() {
    thread::spawn(|| ()).join().unwrap();
}

#[leak_test]
async fn awaited_task_passes() {
    tokio::spawn(async {}).await.unwrap();
}

#[leak_test(settle = "300ms")]
#[ignore = "fixture: run by `attribute_fails_a_thread_leak`"]
fn fixture_thread_leak() {
    let (keep, wait) = mpsc::channel::<()>();
    thread::spawn(move || wait_here(wait));
    std::mem::forget(keep);
}

/// The attribute's path, optimised: a leaking test fails with the report.
#[test]
fn attribute_fails_a_thread_leak() {
    let (passed, output) = run_fixture("fixture_thread_leak");
    assert!(!passed, "{output}");
    assert!(
        output.contains("leakcheck: 1 thread leaked by `fixture_thread_leak`"),
        "{output}"
    );
    assert!(output.contains("stuck in   optimised::wait_here"), "{output}");
}

#[leak_test(settle = "300ms")]
#[ignore = "fixture: run by `attribute_fails_a_task_leak`"]
async fn fixture_task_leak() {
    tokio::spawn(std::future::pending::<()>());
}

#[test]
fn attribute_fails_a_task_leak() {
    let (passed, output) = run_fixture("fixture_task_leak");
    assert!(!passed, "{output}");
    assert!(
        output.contains("leakcheck: 1 task leaked by `fixture_task_leak`"),
        "{output}"
    );
}

#[leak_test(settle = "300ms")]
#[ignore = "fixture: run by `attribute_fails_a_child_process_leak`"]
fn fixture_child_leak() {
    let child = Command::new("sleep").arg("30").spawn().unwrap();
    std::mem::forget(child);
}

#[test]
fn attribute_fails_a_child_process_leak() {
    let (passed, output) = run_fixture("fixture_child_leak");
    assert!(!passed, "{output}");
    assert!(
        output.contains("1 child process leaked by `fixture_child_leak`"),
        "{output}"
    );
    assert!(output.contains("×1 child process `sleep 30` (pid "), "{output}");
}

/// A child that was waited for is no leak.
#[leak_test]
fn waited_child_passes() {
    Command::new("true").status().unwrap();
}
