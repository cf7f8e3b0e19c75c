//! The whole-binary check: at process exit, no thread started by any test may still be alive.
//!
//! The counterpart of goleak's `VerifyTestMain`, with what it lacks: each survivor names the test
//! that started it (the lineage registry knows the libtest thread each thread descends from).
//! [`crate::check_binary!`] installs it before `main` with `ctor`; it runs from an `on_exit`
//! handler, which sees the exit status, so by default it checks only a run whose tests passed.

use std::sync::OnceLock;

use crate::check::settle;
use crate::check::threads::{self, Candidate};
use crate::check::untracked::untracked_tids;
use crate::options::Options;
use crate::probe::lineage;
use crate::probe::stack::Policy;
use crate::report::Report;

static INSTALLED: OnceLock<(Options, bool)> = OnceLock::new();

extern "C" {
    fn on_exit(
        function: extern "C" fn(libc::c_int, *mut libc::c_void),
        arg: *mut libc::c_void,
    ) -> libc::c_int;
}

/// Installs the check (called from the `check_binary!` constructor). `always` also checks a run
/// whose tests failed.
pub(crate) fn install(options: Options, always: bool) {
    if INSTALLED.set((options, always)).is_ok() {
        // SAFETY: registering a plain function with no argument.
        unsafe {
            on_exit(at_exit, std::ptr::null_mut());
        }
    }
}

extern "C" fn at_exit(status: libc::c_int, _: *mut libc::c_void) {
    let Some((options, always)) = INSTALLED.get() else {
        return;
    };
    if status != 0 && !always {
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
        let _ = std::io::stderr().flush();
        // SAFETY: ends the process with a failing status; the report is flushed.
        unsafe { libc::_exit(101) }
    }
}

/// The report of threads started by tests that are still alive, if any.
pub(crate) fn check(options: &Options) -> Result<Option<Report>, String> {
    let settle = match options.settle_or_off() {
        Ok(Some(settle)) => settle,
        Ok(None) => return Ok(None),
        Err(error) => return Err(error.to_string()),
    };
    let look = || -> Vec<Candidate> {
        lineage::all_live()
            .into_iter()
            .filter(started_by_a_test)
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
    let candidates = settle::settle(settle, look);
    if candidates.is_empty() {
        return Ok(None);
    }
    // At exit the threads are no test's own any more: capture only where it changes nothing.
    let (mut survivors, hidden) = threads::describe(&candidates, options, Policy::Transparent);
    let still_alive = look();
    survivors.retain(|survivor| still_alive.iter().any(|c| c.tid() == Some(survivor.id as i32)));
    if survivors.is_empty() {
        return Ok(None);
    }
    let mut report = options.report("the test binary", settle);
    report.name_tests = true;
    report.survivors = survivors;
    report.hidden = hidden;
    report.notes.push(
        "whole-binary check (`leakcheck::check_binary!`): each group names the test that started it; \
         add `#[leak_test]` to that test to fail it directly"
            .into(),
    );
    let _ = report.write_json();
    Ok(Some(report))
}

/// A thread whose creator is itself a created thread: libtest's test threads are created by the
/// main thread (a root), so their descendants are what tests started.
fn started_by_a_test(node: &std::sync::Arc<lineage::Node>) -> bool {
    node.parent.as_ref().is_some_and(|parent| parent.parent.is_some())
}
