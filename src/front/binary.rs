//! The whole-binary check: at process exit, no thread started by any test may still be alive,
//! and no child process started by one may still run.
//!
//! The counterpart of goleak's `VerifyTestMain`, with what it lacks: each survivor names the test
//! that started it (the lineage registry knows the libtest thread each thread descends from).
//! [`crate::check_binary!`] installs it before `main` with `ctor`; it runs from an exit handler
//! (`probe::sys::at_exit`), which sees the exit status where the C library tells it (glibc), so
//! by default it checks only a run whose tests passed; where the status is unknown it checks.

use std::sync::OnceLock;

use crate::check::ownership;
use crate::check::threads::{self, Candidate};
use crate::check::untracked::untracked_tids;
use crate::check::{children, settle};
use crate::model::{frame, Survivor};
use crate::options::Options;
use crate::probe::stack::Policy;
use crate::probe::{lineage, singleton, symbols, sys};
use crate::report::Report;

static INSTALLED: OnceLock<(Options, bool)> = OnceLock::new();

/// Installs the check (called from the `check_binary!` constructor). `always` also checks a run
/// whose tests failed.
pub(crate) fn install(options: Options, always: bool) {
    if INSTALLED.set((options, always)).is_ok() {
        sys::at_exit(at_exit);
    }
}

fn at_exit(status: Option<i32>) {
    let Some((options, always)) = INSTALLED.get() else {
        return;
    };
    if status.is_some_and(|status| status != 0) && !always {
        return;
    }
    // Never unwind out of an exit handler.
    let verdict = std::panic::catch_unwind(|| check(options));
    if let Ok(Err(message)) = &verdict {
        eprintln!("{message}");
        // SAFETY: ends the process with a failing status after a configuration error.
        unsafe { libc::_exit(101) }
    }
    if let Ok(Ok(Some(report))) = verdict {
        use std::io::Write as _;
        let _ = std::io::stdout().flush();
        eprintln!("{report}");
        eprintln!("{}", summary(&report, status.is_none_or(|status| status == 0)));
        report.annotate();
        let _ = std::io::stderr().flush();
        // SAFETY: ends the process with a failing status; the report is flushed.
        unsafe { libc::_exit(101) }
    }
}

/// The report of threads started by tests that are still alive, if any.
pub(crate) fn check(options: &Options) -> Result<Option<Report>, String> {
    let settings = match options.settings() {
        Ok(Some(settings)) => settings,
        Ok(None) => return Ok(None),
        Err(error) => return Err(error.to_string()),
    };
    let look = || -> Vec<Candidate> {
        lineage::all_live()
            .into_iter()
            .filter(started_by_a_test)
            // Singletons live as long as the process; what they started is still checked.
            .filter(|node| !singleton::is_singleton(node))
            .filter(|node| {
                !options
                    .baseline
                    .as_deref()
                    .is_some_and(|b| b.threads.contains(&node.uid))
            })
            .map(Candidate::Node)
            // At exit every thread no creation went through is some test's.
            .chain(
                untracked_tids()
                    .into_iter()
                    .filter(|tid| !options.baseline.as_deref().is_some_and(|b| b.tids.contains(tid)))
                    .map(Candidate::Untracked),
            )
            .collect()
    };
    let mut samples = crate::check::wait::WaitSamples::default();
    // At exit the test threads' scopes are gone: no early verdict, the whole settle.
    let candidates = settle::settle(
        settings.settle,
        None,
        || {
            let candidates = look();
            samples.record(candidates.iter().filter_map(Candidate::tid));
            candidates
        },
        || None,
    )
    .left;
    // At exit the threads are no test's own any more: capture only where it changes nothing.
    let (mut survivors, hidden) = if candidates.is_empty() {
        Default::default()
    } else {
        threads::describe(&candidates, options, &settings, &samples, Policy::Transparent)
    };
    let still_alive = look();
    survivors.retain(|survivor| still_alive.iter().any(|c| c.tid() == Some(survivor.id as i32)));
    let processes = children::find_started_by_tests(options, &settings);
    if survivors.is_empty() && processes.survivors.is_empty() {
        return Ok(None);
    }
    let mut pool_notes: Vec<String> = Vec::new();
    for survivor in &mut survivors {
        if let Some(note) = name_pool_creator(survivor, &candidates) {
            if !pool_notes.contains(&note) {
                pool_notes.push(note);
            }
        }
    }
    let mut report = crate::check::report("the test binary", options, &settings);
    report.name_tests = true;
    report.survivors = survivors;
    report.survivors.extend(processes.survivors);
    report.hidden = hidden;
    report.hidden.extend(processes.hidden);
    report.notes.extend(processes.notes);
    report.notes.push(
        "whole-binary check (`leakcheck::check_binary!`): each group names the test that started it; \
         add `#[leak_test]` to that test to fail it directly"
            .into(),
    );
    report.notes.extend(pool_notes);
    let _ = report.write_json();
    Ok(Some(report))
}

/// The last words of a failed whole-binary check: which tests leaked, that the run failed, and,
/// when the tests passed (`tests_passed`), why the exit code is 101 after libtest's
/// `test result: ok`.
pub(crate) fn summary(report: &Report, tests_passed: bool) -> String {
    let mut tests: Vec<&str> = Vec::new();
    let mut unattributed = 0;
    for survivor in &report.survivors {
        match survivor.test.as_deref() {
            Some(test) if !tests.contains(&test) => tests.push(test),
            Some(_) => {}
            None => unattributed += 1,
        }
    }
    let names: Vec<String> = tests.iter().map(|test| format!("`{test}`")).collect();
    let plural = if tests.len() == 1 { "" } else { "s" };
    let mut by = format!("{} test{plural}: {}", tests.len(), names.join(", "));
    if unattributed > 0 {
        let no_test = format!(
            "{unattributed} with no known test (created outside `pthread_create`, or by a shared pool's thread)"
        );
        by = if tests.is_empty() {
            no_test
        } else {
            format!("{by}; {no_test}")
        };
    }
    let why = if tests_passed {
        "the run failed (exit code 101) although libtest printed `test result: ok`: each test \
         passed on its own, and `check_binary!` found their threads still alive at process exit, \
         after the last test"
    } else {
        "besides the failed tests, `check_binary!(always)` found threads they started still alive \
         at process exit, after the last test"
    };
    format!(
        "leakcheck: FAILED: {} leaked by {by}\n\
         leakcheck: {why}.\n\
         leakcheck: to fail each leaking test by itself, run under `cargo nextest run` (one \
         process per test, so this check gives a per-test verdict) or add `#[leak_test]` to it.",
        report.summary(),
    )
}

/// A thread whose creator is itself a created thread: libtest's test threads are created by the
/// main thread (a root), so their descendants are what tests started.
fn started_by_a_test(node: &std::sync::Arc<lineage::Node>) -> bool {
    node.parent.as_ref().is_some_and(|parent| parent.parent.is_some())
}

/// A thread started by a shared pool's thread (a singleton's, or one it started) may have been
/// working for any test: name the pool thread that created it, and no test. Returns a note that
/// says where that pool thread was created.
fn name_pool_creator(survivor: &mut Survivor, candidates: &[Candidate]) -> Option<String> {
    let node = candidates.iter().find_map(|candidate| match candidate {
        Candidate::Node(node) if node.tid() == Some(survivor.id as i32) => Some(node),
        _ => None,
    });
    let node = node.filter(|node| ownership::under_singleton(node))?;
    survivor.test = None;
    let parent = node.parent.as_ref()?;
    let name = parent
        .name()
        .map(String::from)
        .or_else(|| parent.tid().map(|tid| format!("tid {tid}")))
        .unwrap_or_else(|| "unknown".into());
    let what = if singleton::is_singleton(parent) {
        "a thread of a process-wide pool, created inside a one-time initializer"
    } else {
        "a thread started by a process-wide pool's thread"
    };
    let frames = symbols::resolve(parent.created_at());
    // The pool's own spawning code (outside std and leakcheck), not the test that touched it.
    let spawner = frames.iter().find(|f| {
        frame::subject_crate(&f.key)
            .is_some_and(|krate| !["std", "core", "alloc", "leakcheck", "libc", "backtrace"].contains(&krate))
    });
    let at = spawner.map(|f| format!(" by {}", f.function)).unwrap_or_default();
    survivor.creator = Some(name.clone());
    Some(format!(
        "thread {name:?} is {what}{at}: what it starts may be work for any test, so no test is named"
    ))
}
