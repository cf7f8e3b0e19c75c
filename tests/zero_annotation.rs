//! Own binary: `check_binary!()` checks the whole process at exit, and CI runs exactly these fixtures.
//!
//! Zero-annotation runs: `check_binary!()` once per test file, no attribute on any test. Under
//! `cargo nextest run` (one process per test) every test gets its own verdict; under `cargo test`
//! (one process for all) the run fails after `test result: ok` with a summary naming the tests
//! that leaked and saying why. `.ci/run` also runs these fixtures under real nextest
//! (`scripts/zero_annotation.sh`).

#[path = "it/common/mod.rs"]
mod common;

use std::process::Command;

use common::{leak_named_thread, run_ignored};

leakcheck::check_binary!();

/// Fixture: a clean test.
#[test]
#[ignore = "fixture, run by the zero-annotation tests"]
fn fixture_zero_clean_joins() {
    std::thread::spawn(|| ()).join().unwrap();
}

/// The line of the `leak_named_thread` call in `fixture_zero_leaky_thread`.
const LEAKY_LINE: u32 = line!() + 6;

/// Fixture: a test that leaves a thread behind.
#[test]
#[ignore = "fixture, run by the zero-annotation tests"]
fn fixture_zero_leaky_thread() {
    leak_named_thread("zero-leak");
}

/// Fixture: another clean test.
#[test]
#[ignore = "fixture, run by the zero-annotation tests"]
fn fixture_zero_clean_computes() {
    assert_eq!(40 + 2, 42);
}

const FIXTURES: &[&str] = &[
    "fixture_zero_clean_joins",
    "fixture_zero_leaky_thread",
    "fixture_zero_clean_computes",
];

/// One process per test, as nextest runs them: the leaky test fails, the clean ones pass.
#[test]
fn one_process_per_test_gives_per_test_verdicts() {
    for fixture in FIXTURES {
        let run = run_ignored(fixture, &[("LEAKCHECK_SETTLE", "300ms")]);
        let clean = fixture.contains("clean");
        assert_eq!(run.success, clean, "{fixture}:\n{}{}", run.stdout, run.stderr);
        if !clean {
            assert!(run.stderr.contains("\"zero-leak\""), "{}", run.stderr);
        }
    }
}

/// One process for all, as `cargo test` runs them: libtest says `ok`, then leakcheck's summary
/// names the leaking test (and only it), says the run failed and why the exit code is 101.
#[test]
fn one_process_for_all_ends_with_a_summary() {
    let output = Command::new(std::env::current_exe().unwrap())
        .args(["--ignored", "fixture_zero_"])
        .env("LEAKCHECK_SETTLE", "300ms")
        .env("GITHUB_ACTIONS", "true")
        .env_remove("LEAKCHECK_JSON")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(101), "{stdout}{stderr}");
    assert!(stdout.contains("test result: ok. 3 passed"), "{stdout}");
    assert!(
        stderr.contains("leakcheck: FAILED: 1 thread leaked by 1 test: `fixture_zero_leaky_thread`"),
        "{stderr}"
    );
    assert!(
        stderr.contains("the run failed (exit code 101) although libtest printed `test result: ok`"),
        "{stderr}"
    );
    assert!(stderr.contains("cargo nextest run"), "{stderr}");
    assert!(!stderr.contains("fixture_zero_clean"), "{stderr}");
    // Under GitHub Actions: one annotation, for the leaking test.
    let annotations: Vec<&str> = stderr.lines().filter(|l| l.starts_with("::error")).collect();
    assert_eq!(annotations.len(), 1, "{stderr}");
    assert!(
        annotations[0].contains("1 thread leaked by `fixture_zero_leaky_thread` (whole-binary check)"),
        "{stderr}"
    );
    // At the test's own line that started the thread (found in the creation backtrace).
    assert!(
        annotations[0].starts_with(&format!(
            "::error file=tests/zero_annotation.rs,line={LEAKY_LINE},"
        )),
        "{stderr}"
    );
}
