//! A leak always fails the test, whatever else the test does: with `#[should_panic]` (with or
//! without a body panic) and with an `Err` result, both shown; the matching clean cases pass.

use crate::common;

use common::{leak_named_thread, run_ignored, Run};
use leakcheck::leak_test;

const SHOULD_PANIC_NOTE: &str =
    "leakcheck: this #[should_panic] test leaked; it is failed by returning normally instead of panicking";

/// Runs `fixture` alone and asserts it failed.
fn failed(fixture: &str) -> Run {
    let run = run_ignored(fixture, &[]);
    assert!(!run.success, "{}\n{}", run.stdout, run.stderr);
    let line = run
        .stdout
        .lines()
        .find(|line| line.starts_with(&format!("test verdicts::{fixture} ")))
        .unwrap_or_default();
    assert!(line.ends_with("... FAILED"), "{}", run.stdout);
    run
}

/// The byte offset of `needle` in the output, which must contain it.
fn at(run: &Run, needle: &str) -> usize {
    run.stdout
        .find(needle)
        .unwrap_or_else(|| panic!("missing {needle:?} in:\n{}", run.stdout))
}

/// Fixture: `#[should_panic]`, the body leaks and returns.
#[leak_test(settle = "300ms")]
#[should_panic]
#[ignore]
fn fixture_should_panic_leaks_without_panicking() {
    leak_named_thread("sp-no-panic");
}

/// Fixture: `#[should_panic(expected)]`, the body leaks, then panics as expected.
#[leak_test(settle = "300ms")]
#[should_panic(expected = "boom")]
#[ignore]
fn fixture_should_panic_panics_and_leaks() {
    leak_named_thread("sp-panics");
    panic!("boom");
}

/// Fixture: `#[should_panic]`, no leak and no panic: libtest's own failure, no leakcheck text.
#[leak_test(settle = "300ms")]
#[should_panic]
#[ignore]
fn fixture_should_panic_returns_without_leak() {}

/// Fixture: a `Result` test that leaks and returns `Err`.
#[leak_test(settle = "300ms")]
#[ignore]
fn fixture_err_and_leak() -> Result<(), String> {
    leak_named_thread("err-leak");
    Err("the config is invalid".into())
}

/// Fixture: an async `#[tokio::test]` that leaks a task and returns `Err`.
#[leak_test(settle = "300ms")]
#[tokio::test]
#[ignore]
async fn fixture_async_err_and_leak() -> Result<(), std::io::Error> {
    tokio::spawn(std::future::pending::<()>());
    Err(std::io::Error::other("the socket closed"))
}

/// Fixture: an async `#[should_panic]` test that leaks a task and panics as expected.
#[leak_test(settle = "300ms")]
#[tokio::test]
#[should_panic(expected = "boom")]
#[ignore]
async fn fixture_async_should_panic_panics_and_leaks() {
    tokio::spawn(std::future::pending::<()>());
    panic!("boom");
}

/// A leak fails a `#[should_panic]` test whose body returned: report, then libtest's failure.
#[test]
fn should_panic_leak_without_panic_fails() {
    let run = failed("fixture_should_panic_leaks_without_panicking");
    let note = at(&run, SHOULD_PANIC_NOTE);
    assert!(at(&run, "(its body did not panic)") > note);
    assert!(at(&run, "1 thread leaked by") > note);
    assert!(at(&run, "\"sp-no-panic\"") > note);
    assert!(at(&run, "did not panic as expected") > note);
    let section = common::failure_section(
        &run.stdout,
        "verdicts::fixture_should_panic_leaks_without_panicking",
    );
    // The whole report as glibc builds give it (stacks and waits); elsewhere the facts above.
    if cfg!(all(target_os = "linux", target_env = "gnu")) {
        common::report_settings().bind(|| insta::assert_snapshot!(section.trim()));
    }
}

/// A leak fails a `#[should_panic]` test that panicked as expected: the panic first, then the
/// report and why the test fails.
#[test]
fn should_panic_leak_with_expected_panic_fails() {
    let run = failed("fixture_should_panic_panics_and_leaks");
    let panic = at(&run, "panicked at tests/it/verdicts.rs:");
    assert!(at(&run, "boom") > panic);
    let note = at(&run, SHOULD_PANIC_NOTE);
    assert!(note > panic, "the panic comes first:\n{}", run.stdout);
    assert!(at(&run, "its panic, reported above, is not re-raised") > note);
    assert!(at(&run, "\"sp-panics\"") > note);
}

/// Without a leak, `#[should_panic]` is libtest's alone: a missing panic fails as usual.
#[test]
fn should_panic_without_leak_is_untouched() {
    let run = failed("fixture_should_panic_returns_without_leak");
    at(&run, "did not panic as expected");
    assert!(!run.stdout.contains("leakcheck"), "{}", run.stdout);
}

/// A `#[should_panic]` test that panics as expected and leaks nothing passes.
#[leak_test]
#[should_panic(expected = "boom")]
fn should_panic_clean_passes() {
    let worker = std::thread::spawn(|| 1);
    worker.join().unwrap();
    panic!("boom");
}

/// An async `#[should_panic]` test that panics as expected and leaks nothing passes.
#[leak_test]
#[tokio::test]
#[should_panic(expected = "boom")]
async fn async_should_panic_clean_passes() {
    tokio::spawn(async {}).await.unwrap();
    panic!("boom");
}

/// `Err` and a leak: both shown, the report first, then libtest's `Error: ...`.
#[test]
fn err_and_leak_shows_both() {
    let run = failed("fixture_err_and_leak");
    let report = at(&run, "1 thread leaked by");
    assert!(at(&run, "\"err-leak\"") > report);
    let error = at(&run, "Error: \"the config is invalid\"");
    assert!(error > report, "{}", run.stdout);
}

/// Async: an `Err` and a leaked task are both shown.
#[test]
fn async_err_and_leak_shows_both() {
    let run = failed("fixture_async_err_and_leak");
    let report = at(&run, "1 task leaked by");
    let error = at(&run, "the socket closed");
    assert!(error > report, "{}", run.stdout);
}

/// Async `#[should_panic]`: the expected panic, then the task report; the test fails.
#[test]
fn async_should_panic_leak_fails() {
    let run = failed("fixture_async_should_panic_panics_and_leaks");
    let panic = at(&run, "boom");
    let note = at(&run, SHOULD_PANIC_NOTE);
    assert!(note > panic, "{}", run.stdout);
    assert!(at(&run, "1 task leaked by") > note);
}

/// A `Result` test that returns `Ok` and leaks nothing passes.
#[leak_test]
fn ok_result_clean_passes() -> Result<(), String> {
    std::thread::spawn(|| ()).join().map_err(|_| "join".to_string())
}
