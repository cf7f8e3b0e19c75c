//! Own binary: its `#[ctor]` starts threads before `main`, which would be every other test's baseline.
//!
//! Threads started before `main` (a constructor's pool) belong to no test: in lineage mode they
//! descend from the main thread, in the process-diff fallback they are the start-up baseline, and
//! with one test per process they are not "untracked". leakcheck's start-up reads that baseline
//! from the registry when every thread alive then was registered, and lists `/proc` otherwise.
#![cfg(all(target_os = "linux", target_env = "gnu"))]

#[path = "it/common/mod.rs"]
mod common;

use common::{run_ignored, LEAK_SETTLE};
use leakcheck::{leak_test, Options};

/// Threads this binary starts before `main`.
const STARTUP_THREADS: usize = 3;

#[ctor::ctor(unsafe)]
fn start_idle_threads() {
    for i in 0..STARTUP_THREADS {
        std::thread::Builder::new()
            .name(format!("startup-{i}"))
            .spawn(|| loop {
                std::thread::park();
            })
            .expect("spawn a start-up thread");
    }
}

/// Fixture: a plain test that starts nothing.
#[test]
#[ignore = "fixture, run by threads_started_before_main_are_nobodys"]
fn fixture_plain_clean() {
    Options::new().settle(LEAK_SETTLE).verify_none();
}

/// Fixture: a plain test that leaks one thread.
#[test]
#[ignore = "fixture, run by threads_started_before_main_are_nobodys"]
fn fixture_plain_leak() {
    common::leak_named_thread("after-main");
    Options::new().settle(LEAK_SETTLE).verify_none();
}

/// Fixture: an attributed test that starts nothing.
#[leak_test]
#[ignore = "fixture, run by threads_started_before_main_are_nobodys"]
fn fixture_attribute_clean() {}

/// Fixture: an attributed test that leaks one thread.
#[leak_test(settle = "300ms")]
#[ignore = "fixture, run by threads_started_before_main_are_nobodys"]
fn fixture_attribute_leak() {
    common::leak_named_thread("after-main");
}

/// In every mode, the clean fixtures pass and the leaky ones report exactly their own thread.
#[test]
fn threads_started_before_main_are_nobodys() {
    let modes: [&[(&str, &str)]; 3] = [
        &[],
        &[("LEAKCHECK_LINEAGE", "off")],
        &[("NEXTEST_EXECUTION_MODE", "process-per-test")],
    ];
    for envs in modes {
        for fixture in ["fixture_plain_clean", "fixture_attribute_clean"] {
            let run = run_ignored(fixture, envs);
            assert!(run.success, "{fixture} {envs:?}:\n{}\n{}", run.stdout, run.stderr);
            assert!(
                !run.stdout.contains("leaked"),
                "{fixture} {envs:?}:\n{}",
                run.stdout
            );
        }
        for fixture in ["fixture_plain_leak", "fixture_attribute_leak"] {
            let run = run_ignored(fixture, envs);
            assert!(!run.success, "{fixture} {envs:?}:\n{}", run.stdout);
            assert!(
                run.stdout
                    .contains(&format!("leakcheck: 1 thread leaked by `{fixture}`")),
                "{fixture} {envs:?}:\n{}",
                run.stdout
            );
            assert!(
                run.stdout.contains("after-main"),
                "{fixture} {envs:?}:\n{}",
                run.stdout
            );
            assert!(
                !run.stdout.contains("startup-"),
                "{fixture} {envs:?}:\n{}",
                run.stdout
            );
        }
    }
}
