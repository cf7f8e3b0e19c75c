//! The attribute runtime: what `#[leak_test]` runs around a test body (entry snapshot, the body
//! under `catch_unwind`, the settled checks, the verdict).

use std::collections::HashSet;
use std::future::Future;
use std::panic::{self, AssertUnwindSafe};
use std::sync::{Arc, Mutex};

use futures::FutureExt as _;

use crate::check::tasks::{self, TaskFindings, TaskScope};
use crate::check::threads::Scope;
use crate::check::{check_threads, merge};
use crate::context::{Context, Entered};
use crate::error::LeakError;
use crate::model::Runtime;
use crate::options::Options;
use crate::probe;

/// `#[leak_test]` on a sync fn.
#[track_caller]
pub(crate) fn run_sync<R>(test: &'static str, options: Options, body: impl FnOnce() -> R) -> R {
    let settle = match options.settle_or_off() {
        Ok(Some(settle)) => settle,
        Ok(None) => return body(),
        Err(error) => panic!("{error}"),
    };
    let scope = Scope::enter();
    let entered = Entered::new(Context {
        test,
        options: options.clone(),
        baseline: scope.baseline.clone(),
        entry_tids: scope.entry_tids.clone(),
        runtime_threads: None,
        task_baseline: None,
    });
    let outcome = panic::catch_unwind(AssertUnwindSafe(body));
    drop(entered);
    let name = test_name(test);
    let verdict = check_threads(&scope, &options, settle, &name);
    conclude(outcome, verdict)
}

/// `#[leak_test]` on an async fn: builds the runtime, checks tasks inside it, shuts it down with
/// a bounded wait, then checks threads.
#[track_caller]
pub(crate) fn run_async<F: Future>(
    test: &'static str,
    options: Options,
    config: Runtime,
    body: F,
) -> F::Output {
    let settle = match options.settle_or_off() {
        Ok(settle) => settle,
        Err(error) => panic!("{error}"),
    };
    let mut scope = Scope::enter();
    let runtime_threads = Arc::new(Mutex::new(HashSet::new()));
    let (runtime, _probe) = match probe::tasks::build_runtime(config, runtime_threads.clone()) {
        Ok(built) => built,
        Err(error) => panic!("leakcheck: failed to build the test's tokio runtime: {error}"),
    };
    let Some(settle) = settle else {
        let output = runtime.block_on(body);
        probe::tasks::forget_runtime(&runtime);
        return output;
    };
    scope.runtime_threads = Some(runtime_threads.clone());
    let entered = Entered::new(Context {
        test,
        options: options.clone(),
        baseline: scope.baseline.clone(),
        entry_tids: scope.entry_tids.clone(),
        runtime_threads: Some(runtime_threads),
        task_baseline: Some(0),
    });
    let (outcome, tasks) = runtime.block_on(async {
        let outcome = AssertUnwindSafe(body).catch_unwind().await;
        let tasks = match TaskScope::unentered() {
            Some(scope) => tasks::find(&scope, &options, settle).await,
            None => TaskFindings::default(),
        };
        (outcome, tasks)
    });
    drop(entered);
    probe::tasks::forget_runtime(&runtime);
    // Plain drop would wait forever for a `spawn_blocking` closure that never returns; that
    // thread is reported by the thread check below instead.
    runtime.shutdown_timeout(settle);
    scope.runtime_threads = None;
    let name = test_name(test);
    let threads = check_threads(&scope, &options, settle, &name);
    conclude(outcome, merge(threads, tasks, &options, settle, &name))
}

/// libtest's full name for the running test (its thread's name), else the function's name. A
/// test generated from the function (an rstest case `my_test::case_1`) has the function's name as
/// a path segment of its own.
fn test_name(test: &'static str) -> String {
    match std::thread::current().name() {
        Some(name) if name.ends_with(test) || name.split("::").any(|segment| segment == test) => {
            name.to_string()
        }
        _ => test.to_string(),
    }
}

/// The test's outcome: the original panic wins, with a leak as a note; else the leak fails it.
#[track_caller]
fn conclude<R>(outcome: std::thread::Result<R>, verdict: Result<(), LeakError>) -> R {
    match (outcome, verdict) {
        (Ok(value), Ok(())) => value,
        (Ok(_), Err(error)) => error.raise(panic::Location::caller()),
        (Err(payload), verdict) => {
            if let Err(error) = verdict {
                eprintln!("note: the test panicked (its panic is reported above) and also leaked:\n{error}");
            }
            panic::resume_unwind(payload)
        }
    }
}
