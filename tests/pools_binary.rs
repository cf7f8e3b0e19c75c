//! Own binary: `check_binary!()` checks the whole process at exit, so no other test may share it.
//!
//! The whole-binary check and process-wide pools: rayon's global pool, alive at exit, is not a
//! failure; a thread a job on that pool leaves behind is, naming the pool thread that created it
//! and no test.

#[path = "it/common/mod.rs"]
mod common;

use std::sync::mpsc;

use rayon::prelude::*;

leakcheck::check_binary!();

/// Fixture: a plain test that uses rayon's global pool.
#[test]
#[ignore = "fixture, run by global_pool_alive_at_exit_passes"]
fn fixture_uses_global_pool() {
    assert_eq!((0..1000u64).into_par_iter().sum::<u64>(), 499_500);
}

/// Fixture: a plain test whose job on the global pool leaves a thread behind.
#[test]
#[ignore = "fixture, run by thread_left_by_a_pool_job_is_reported_at_exit"]
fn fixture_pool_job_leaves_a_thread() {
    let (started, wait) = mpsc::channel();
    rayon::spawn(move || {
        common::leak_named_thread("left-by-a-job");
        started.send(()).unwrap();
    });
    wait.recv().unwrap();
}

/// The global pool's threads, alive at exit, are not a failure.
#[test]
fn global_pool_alive_at_exit_passes() {
    common::run_binary_check("fixture_uses_global_pool").assert_clean_pass();
}

/// A thread left by a job on the pool is reported at exit, naming the pool thread, no test.
#[test]
fn thread_left_by_a_pool_job_is_reported_at_exit() {
    let run = common::run_binary_check("fixture_pool_job_leaves_a_thread");
    let report = run.binary_report();
    assert!(!report.contains("started by test"), "{report}");
    // The pool's spawning code is named, never leakcheck's own frames.
    assert!(
        report.contains("initializer by <rayon_core::registry::DefaultSpawn"),
        "{report}"
    );
    common::report_settings().bind(|| insta::assert_snapshot!(report.trim()));
}
