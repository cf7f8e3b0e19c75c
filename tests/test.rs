//! Its own binary because its name is the point: `tests/test.rs` compiles to a crate named `test`,
//! like libtest, and its frames are still the user's (told by their file, not their crate).

#[path = "it/common/mod.rs"]
mod common;

use common::run_ignored;
use leakcheck::leak_test;

/// Waits on a channel whose sender is forgotten: forever.
#[inline(never)]
fn wait_forever(inbox: std::sync::mpsc::Receiver<()>) {
    let _ = inbox.recv();
}

/// Starts a worker that waits forever.
#[inline(never)]
fn start_worker() {
    let (keep, inbox) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("test-crate-worker".into())
        .spawn(move || wait_forever(inbox))
        .unwrap();
    std::mem::forget(keep);
}

/// Fixture: leaks a thread through a helper.
#[leak_test(settle = "200ms")]
#[ignore = "fixture, run by frames_of_a_crate_named_test_are_the_users"]
fn fixture_leak_in_crate_test() {
    start_worker();
}

/// The report's stuck frame, creation chain and stack reach the user's frames of crate `test`.
#[test]
fn frames_of_a_crate_named_test_are_the_users() {
    let run = run_ignored("fixture_leak_in_crate_test", &[]);
    assert!(!run.success, "{}", run.stdout);
    let report = &run.stdout;
    assert!(
        report.contains("stuck in   test::wait_forever at tests/test.rs:"),
        "{report}"
    );
    assert!(
        report.contains("in test::start_worker, called from tests/test.rs:")
            && report.contains("in test::fixture_leak_in_crate_test"),
        "{report}"
    );
    assert!(
        report.contains("cause: blocked receiving from a channel"),
        "{report}"
    );
}
