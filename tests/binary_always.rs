//! Own binary: `check_binary!(always)` checks the whole process at exit, so no other test may share it.
//!
//! `check_binary!(always)`: the whole-binary check also runs when the tests failed (the default
//! skips such runs, whose failure already stands).

#[path = "it/common/mod.rs"]
mod common;

leakcheck::check_binary!(always);

/// Fixture: leaves a thread behind, then fails.
#[test]
#[ignore = "fixture, run by failing_run_is_still_checked"]
fn fixture_leaks_and_fails() {
    common::leak_named_thread("after-failure");
    panic!("the test's own failure");
}

/// With `always`, a failed run is checked too and its report names the leaking test.
#[test]
fn failing_run_is_still_checked() {
    let run = common::run_binary_check("fixture_leaks_and_fails");
    run.binary_report();
    assert!(run.stdout.contains("the test's own failure"), "{}", run.stdout);
    assert!(
        run.stderr.contains("started by test `fixture_leaks_and_fails`"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("\"after-failure\""), "{}", run.stderr);
    // libtest printed `FAILED`: the summary does not claim it printed `test result: ok`.
    assert!(run.stdout.contains("test result: FAILED"), "{}", run.stdout);
    assert!(
        !run.stderr.contains("libtest printed `test result: ok`"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("besides the failed tests"), "{}", run.stderr);
}
