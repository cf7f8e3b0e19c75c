//! Own binary: `check_binary!()` checks the whole process at exit, so no other test may share it.
//!
//! The whole-binary check (`check_binary!`): fails a run whose tests leave threads behind and
//! names the test; passes a clean run; does nothing (and says so once) with `LEAKCHECK=off`.

#[path = "it/common/mod.rs"]
mod common;

use std::sync::mpsc;
use std::thread;

use common::run_ignored;

leakcheck::check_binary!();

#[inline(never)]
fn stuck_forever(wait: mpsc::Receiver<()>) {
    let _ = wait.recv();
}

/// Fixture: a plain test that leaves a thread behind (and passes).
#[test]
#[ignore = "fixture, run by leaking_binary_fails_and_names_the_test"]
fn fixture_leaves_a_thread() {
    let (keep, wait) = mpsc::channel::<()>();
    thread::Builder::new()
        .name("left-behind".into())
        .spawn(move || stuck_forever(wait))
        .unwrap();
    std::mem::forget(keep);
}

/// Fixture: a plain test that joins what it starts.
#[test]
#[ignore = "fixture, run by clean_binary_passes"]
fn fixture_joins_its_thread() {
    thread::spawn(|| ()).join().unwrap();
}

/// A run whose test leaves a thread fails, and the report names that test.
#[test]
fn leaking_binary_fails_and_names_the_test() {
    let run = common::run_binary_check("fixture_leaves_a_thread");
    let report = run.binary_report();
    assert!(
        report.contains("started by test `fixture_leaves_a_thread`"),
        "{report}"
    );
    common::report_settings().bind(|| insta::assert_snapshot!(report.trim()));
}

/// Fixture: a plain test that leaves a child process running (and passes).
#[test]
#[ignore = "fixture, run by binary_names_the_test_that_left_a_child"]
#[allow(clippy::zombie_processes)]
fn fixture_leaves_a_child() {
    std::process::Command::new("sleep").arg("36").spawn().unwrap();
}

/// A run whose test leaves a child process running fails, naming the child and the test, and the
/// child is killed afterwards.
#[test]
fn binary_names_the_test_that_left_a_child() {
    let run = common::run_binary_check("fixture_leaves_a_child");
    let report = run.binary_report();
    assert!(
        report.contains("started by test `fixture_leaves_a_child`"),
        "{report}"
    );
    common::report_settings().bind(|| insta::assert_snapshot!(report.trim()));
}

/// A clean run passes, with nothing printed by leakcheck.
#[test]
fn clean_binary_passes() {
    run_ignored("fixture_joins_its_thread", &[]).assert_clean_pass();
}

/// With `LEAKCHECK=off` the check does nothing and says so once.
#[test]
fn opt_out_checks_nothing_and_says_so_once() {
    let run = run_ignored("fixture_leaves_a_thread", &[("LEAKCHECK", "off")]);
    assert!(run.success, "{}{}", run.stdout, run.stderr);
    assert_eq!(run.stderr.matches("LEAKCHECK=off").count(), 1, "{}", run.stderr);
}

/// A malformed variable is a clear error naming it and the valid forms.
#[test]
fn malformed_variable_is_a_clear_error() {
    let run = run_ignored("fixture_joins_its_thread", &[("LEAKCHECK_SETTLE", "soon")]);
    assert!(
        run.stderr.contains("invalid `LEAKCHECK_SETTLE=soon`"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("`500ms`"), "{}", run.stderr);
}

/// Fixture: leaves a thread behind and fails.
#[test]
#[ignore = "fixture, run by failed_run_is_not_checked_by_default"]
fn fixture_leaks_and_fails() {
    let (keep, wait) = mpsc::channel::<()>();
    thread::spawn(move || stuck_forever(wait));
    std::mem::forget(keep);
    panic!("the test's own failure");
}

/// By default a run whose tests failed is not checked: its failure already stands.
#[test]
fn failed_run_is_not_checked_by_default() {
    let run = common::run_binary_check("fixture_leaks_and_fails");
    assert!(!run.success);
    assert!(run.stdout.contains("the test's own failure"), "{}", run.stdout);
    assert!(!run.stderr.contains("leakcheck:"), "{}", run.stderr);
}
