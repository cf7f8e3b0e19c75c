//! CI output: under GitHub Actions (`GITHUB_ACTIONS=true`) a leak prints one `::error` annotation
//! at the test's own line; the JSON line carries the test's file and line, the binary and each
//! survivor's kind; a relative `LEAKCHECK_JSON` lands at the workspace root. Also: the
//! `LEAKCHECK=off` notice is seen past libtest's output capture.

use crate::common;

use common::{leak_named_thread, run_ignored};
use leakcheck::leak_test;

/// The line of `fixture_leaks_for_ci`'s `#[leak_test]`.
const FIXTURE_LINE: u32 = line!() + 3;

/// Fixture: a test that leaks a thread.
#[leak_test(settle = "300ms")]
#[ignore = "fixture, run by the CI output tests"]
fn fixture_leaks_for_ci() {
    leak_named_thread("ci-leak");
}

/// Fixture: a clean test.
#[leak_test]
#[ignore = "fixture, run by clean_test_prints_no_annotation"]
fn fixture_clean_for_ci() {}

/// Under GitHub Actions a leaking test prints exactly one annotation at its own line.
#[test]
fn leak_prints_one_annotation_at_the_test_line() {
    let run = run_ignored("fixture_leaks_for_ci", &[("GITHUB_ACTIONS", "true")]);
    assert!(!run.success);
    let annotations: Vec<&str> = run
        .stderr
        .lines()
        .filter(|line| line.starts_with("::error"))
        .collect();
    assert_eq!(annotations.len(), 1, "{}", run.stderr);
    assert!(
        annotations[0].starts_with(&format!("::error file=tests/it/github.rs,line={FIXTURE_LINE},")),
        "{}",
        run.stderr
    );
    insta::assert_snapshot!(annotations[0]);
}

/// Outside GitHub Actions, and on a clean pass, nothing of the kind is printed.
#[test]
fn clean_test_prints_no_annotation() {
    let run = run_ignored("fixture_leaks_for_ci", &[("GITHUB_ACTIONS", "false")]);
    assert!(!run.success);
    assert!(!run.stderr.contains("::error"), "{}", run.stderr);
    let run = run_ignored("fixture_clean_for_ci", &[("GITHUB_ACTIONS", "true")]);
    assert!(run.success, "{}{}", run.stdout, run.stderr);
    assert!(!run.stderr.contains("::error"), "{}", run.stderr);
}

/// The JSON line names the test's file and line, the binary and each survivor's kind; a
/// relative `LEAKCHECK_JSON` is resolved against the workspace root (where `Cargo.lock` is).
#[test]
fn json_line_has_file_line_binary_and_kinds() {
    let relative = format!("target/leakcheck-github-test-{}.jsonl", std::process::id());
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let absolute = root.join(&relative);
    let _ = std::fs::remove_file(&absolute);
    let run = run_ignored("fixture_leaks_for_ci", &[("LEAKCHECK_JSON", &relative)]);
    assert!(!run.success);
    let text = std::fs::read_to_string(&absolute).expect("the JSON file at the workspace root");
    let _ = std::fs::remove_file(&absolute);
    let line: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    assert_eq!(line["test"], "github::fixture_leaks_for_ci");
    assert_eq!(line["file"], "tests/it/github.rs");
    assert_eq!(line["line"], FIXTURE_LINE);
    assert_eq!(line["binary"], "it");
    assert_eq!(line["survivors"][0]["kind"], "thread");
    assert_eq!(line["survivors"][0]["name"], "ci-leak");
}

/// The `LEAKCHECK=off` notice shows in a run whose output libtest captures (a passing test's
/// `eprintln!` would be swallowed).
#[test]
fn opt_out_notice_survives_capture() {
    let run = run_ignored("fixture_leaks_for_ci", &[("LEAKCHECK", "off")]);
    assert!(run.success, "{}{}", run.stdout, run.stderr);
    assert!(
        run.stderr
            .contains("leakcheck: LEAKCHECK=off: leak checks are disabled in this process"),
        "{}",
        run.stderr
    );
}
