//! The attribute runtime: what `#[leak_test]` runs around a test body (entry snapshot, the body
//! under `catch_unwind`, the settled checks, the verdict).

mod once;

pub use once::Test;

#[cfg(feature = "tokio")]
use std::collections::HashSet;
#[cfg(feature = "tokio")]
use std::future::Future;
use std::panic::{self, AssertUnwindSafe};
#[cfg(feature = "tokio")]
use std::sync::{Arc, Mutex};
use std::time::Instant;

#[cfg(feature = "tokio")]
use futures::FutureExt as _;

use crate::check::children::{self, ChildScope};
#[cfg(feature = "tokio")]
use crate::check::merge;
#[cfg(feature = "tokio")]
use crate::check::tasks::{self, TaskFindings, TaskScope};
use crate::check::threads::{self, Scope};
use crate::check::{check_threads, merge_children};
use crate::config::Settings;
use crate::context::{self, Context};
#[cfg(feature = "tokio")]
use crate::model::Runtime;
use crate::options::Options;
#[cfg(feature = "tokio")]
use crate::probe;
use crate::probe::lineage;
use crate::report::error::LeakError;

/// A test body run under the attribute (its value, if any, is kept by the caller): its outcome
/// and the leak verdict, or (settle off) just that it ran.
enum Ran {
    Unchecked,
    Checked(std::thread::Result<()>, Result<(), LeakError>),
}

/// `#[leak_test]` on a sync fn.
///
/// Only this layer is generic. Every test's body has a type of its own, so a runtime generic
/// over the body would be compiled once per test: thousands of copies of the same code, each one
/// cold (page faults on the binary's text, cache misses) the one time its test runs; in a debug
/// build that cost more than everything else a clean pass does. The body runs behind
/// `&mut dyn FnMut()`, and one [`checked_sync`] serves every test.
#[track_caller]
pub(crate) fn run_sync<R>(
    test: &'static Test,
    options: Options,
    is_err: fn(&R) -> bool,
    body: impl FnOnce() -> R,
) -> R {
    let mut body = Some(body);
    let mut value = None;
    let ran = checked_sync(test, options, &mut || {
        if let Some(body) = body.take() {
            value = Some(body());
        }
    });
    finish(ran, value, is_err)
}

/// The test's value or panic, with the verdict (generic only in the value's type, so shared by
/// tests that return the same type).
#[track_caller]
fn finish<R>(ran: Ran, value: Option<R>, is_err: fn(&R) -> bool) -> R {
    match (ran, value) {
        (Ran::Unchecked, Some(value)) => value,
        (Ran::Checked(Ok(()), verdict), Some(value)) => conclude(Ok(value), verdict, is_err),
        (Ran::Checked(Err(payload), verdict), _) => conclude(Err(payload), verdict, is_err),
        // The body returned (`Ok`) without storing its value: impossible, it stores it first.
        (Ran::Unchecked | Ran::Checked(Ok(()), _), None) => unreachable!("the test body ran"),
    }
}

/// `#[leak_test]` on a sync `#[should_panic]` fn.
#[track_caller]
pub(crate) fn run_sync_should_panic(test: &'static Test, options: Options, body: impl FnOnce()) {
    let mut body = Some(body);
    let ran = checked_sync(test, options, &mut || {
        if let Some(body) = body.take() {
            body();
        }
    });
    if let Ran::Checked(outcome, verdict) = ran {
        conclude_should_panic(outcome, verdict);
    }
}

/// The runtime of a sync test, one for all of them (see [`run_sync`]). The body runs inside this
/// frame, so it holds only what a clean pass needs; the settled checks are a call away.
#[track_caller]
fn checked_sync(test: &'static Test, options: Options, body: &mut dyn FnMut()) -> Ran {
    once::record(test);
    let options = options.at(panic::Location::caller());
    let settings = match options.settings() {
        Ok(Some(settings)) => settings,
        Ok(None) => {
            body();
            return Ran::Unchecked;
        }
        Err(error) => misconfigured(error),
    };
    let mut context = Context {
        test: test.name,
        options,
        baseline: Vec::new(),
        entry_tids: None,
        runtime_threads: None,
        task_baseline: None,
    };
    // The usual entry, in lineage mode: the test's thread owns no thread and no child process
    // yet, so its scopes would be empty. The body runs with the context installed (where
    // `verify_none()` reads it), and a look after it that finds nothing is a clean pass; the
    // scopes are made only if that look finds something. (A verbose check always settles, and
    // so does every check under nextest's process per test: see `threads::clean_in_one_look`.)
    if !settings.verbose && threads::clean_in_one_look() {
        let root = lineage::current();
        if root.owns_nothing() {
            let outcome = context::installed(&context, || panic::catch_unwind(AssertUnwindSafe(&mut *body)));
            if root.owns_nothing() {
                return Ran::Checked(outcome, Ok(()));
            }
            let scope = Scope::owned_nothing_at_entry(root.clone());
            let child_scope = ChildScope::owned_nothing_at_entry(root);
            let verdict = settled_sync(test.name, &scope, &child_scope, &context.options, &settings);
            return Ran::Checked(outcome, verdict);
        }
    }
    // Otherwise the scopes are entered now, with what the thread owns as baseline. The baseline
    // moves into the context for the body and back: no copy.
    // The test thread's name is recorded on its node when it starts a thread (reports name the
    // test from it); a clean pass needs none of it.
    let root = lineage::current();
    let mut scope = Scope::enter_at(root.clone());
    let child_scope = ChildScope::enter_at(root);
    context.baseline = std::mem::take(&mut scope.baseline);
    context.entry_tids = scope.entry_tids.clone();
    let outcome = context::installed(&context, || panic::catch_unwind(AssertUnwindSafe(body)));
    let Context {
        options, baseline, ..
    } = context;
    scope.baseline = baseline;
    // A clean pass in one look, as the settled checks would conclude on their first look.
    if !settings.verbose && scope.nothing_alive() && child_scope.nothing_alive() {
        return Ran::Checked(outcome, Ok(()));
    }
    Ran::Checked(
        outcome,
        settled_sync(test.name, &scope, &child_scope, &options, &settings),
    )
}

/// The settled thread and child checks of a sync test, when the one look found something.
#[inline(never)]
fn settled_sync(
    test: &'static str,
    scope: &Scope,
    child_scope: &ChildScope,
    options: &Options,
    settings: &Settings,
) -> Result<(), LeakError> {
    let name = test_name(test);
    let checked = Instant::now();
    let verdict = check_threads(scope, options, settings, &name);
    let found = children::find(child_scope, options, settings, checked);
    merge_children(verdict, found, options, settings, &name)
}

/// A configuration error (a malformed `LEAKCHECK*` variable) fails the test that met it.
#[cold]
#[inline(never)]
#[track_caller]
fn misconfigured(error: LeakError) -> ! {
    panic!("{error}")
}

/// `#[leak_test]` on an async fn: builds the runtime, checks tasks inside it, shuts it down with
/// a bounded wait, then checks threads. Generic only in this layer, as [`run_sync`] is: the body
/// runs as a boxed `dyn Future`, so one [`checked_async`] serves every test.
#[cfg(feature = "tokio")]
#[track_caller]
pub(crate) fn run_async<F: Future>(
    test: &'static Test,
    options: Options,
    config: Runtime,
    is_err: fn(&F::Output) -> bool,
    body: F,
) -> F::Output {
    let mut value = None;
    let ran = checked_async(
        test,
        options,
        config,
        Box::pin(async {
            value = Some(body.await);
        }),
    );
    finish(ran, value, is_err)
}

/// `#[leak_test]` on an async `#[should_panic]` fn.
#[cfg(feature = "tokio")]
#[track_caller]
pub(crate) fn run_async_should_panic<F: Future<Output = ()>>(
    test: &'static Test,
    options: Options,
    config: Runtime,
    body: F,
) {
    if let Ran::Checked(outcome, verdict) = checked_async(test, options, config, Box::pin(body)) {
        conclude_should_panic(outcome, verdict);
    }
}

/// The runtime of an async test, one for all of them (see [`run_async`]).
#[cfg(feature = "tokio")]
#[track_caller]
fn checked_async(
    test: &'static Test,
    options: Options,
    config: Runtime,
    body: std::pin::Pin<Box<dyn Future<Output = ()> + '_>>,
) -> Ran {
    once::record(test);
    let test = test.name;
    let options = options.at(panic::Location::caller());
    let settings = match options.settings() {
        Ok(settings) => settings,
        Err(error) => misconfigured(error),
    };
    let root = lineage::current_named();
    let mut scope = Scope::enter_at(root.clone());
    let child_scope = ChildScope::enter_at(root);
    let runtime_threads = Arc::new(Mutex::new(HashSet::new()));
    let (runtime, _probe) = match probe::tasks::build_runtime(config, runtime_threads.clone()) {
        Ok(built) => built,
        Err(error) => panic!("leakcheck: failed to build the test's tokio runtime: {error}"),
    };
    let Some(settings) = settings else {
        runtime.block_on(body);
        probe::tasks::forget_runtime(&runtime);
        return Ran::Unchecked;
    };
    scope.runtime_threads = Some(runtime_threads.clone());
    let context = Context {
        test,
        options: options.clone(),
        baseline: scope.baseline.clone(),
        entry_tids: scope.entry_tids.clone(),
        runtime_threads: Some(runtime_threads),
        task_baseline: Some(0),
    };
    let (outcome, tasks, checked) = context::installed(&context, || {
        runtime.block_on(async {
            let outcome = AssertUnwindSafe(body).catch_unwind().await;
            let checked = Instant::now();
            let tasks = match TaskScope::unentered() {
                Some(scope) => tasks::find(&scope, &options, &settings).await,
                None => TaskFindings::default(),
            };
            (outcome, tasks, checked)
        })
    });
    probe::tasks::forget_runtime(&runtime);
    // Plain drop would wait forever for a `spawn_blocking` closure that never returns; that
    // thread is reported by the thread check below instead.
    runtime.shutdown_timeout(settings.settle);
    scope.runtime_threads = None;
    let name = test_name(test);
    let threads = check_threads(&scope, &options, &settings, &name);
    let verdict = merge(threads, tasks, &options, &settings, &name);
    let found = children::find(&child_scope, &options, &settings, checked);
    Ran::Checked(
        outcome,
        merge_children(verdict, found, &options, &settings, &name),
    )
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

/// The test's outcome: the original panic wins, with a leak as a note; an `Err` is returned as is,
/// after the leak's report; else the leak fails the test.
#[track_caller]
fn conclude<R>(outcome: std::thread::Result<R>, verdict: Result<(), LeakError>, is_err: fn(&R) -> bool) -> R {
    match (outcome, verdict) {
        (Ok(value), Ok(())) => value,
        (Ok(value), Err(error)) if is_err(&value) => returned_err_and_leaked(value, &error),
        (Ok(_), Err(error)) => error.raise(panic::Location::caller()),
        (Err(payload), verdict) => {
            if let Err(error) = verdict {
                eprintln!("note: the test panicked (its panic is reported above) and also leaked:\n{error}");
            }
            panic::resume_unwind(payload)
        }
    }
}

/// A test that returned `Err` and leaked: the report, then the `Err` returned unchanged, so libtest
/// fails the test and prints it (`Error: ...`) below the report.
fn returned_err_and_leaked<R>(value: R, error: &LeakError) -> R {
    eprintln!("{error}\nnote: the test also returned an error, printed below");
    value
}

/// A `#[should_panic]` test. libtest fails one that returns normally ("test did not panic as
/// expected"), so a leak fails it that way, whether or not the body panicked; without a leak, the
/// body's panic (or return) reaches libtest unchanged.
fn conclude_should_panic(outcome: std::thread::Result<()>, verdict: Result<(), LeakError>) {
    match (outcome, verdict) {
        (Ok(()), Ok(())) => {}
        (Err(payload), Ok(())) => panic::resume_unwind(payload),
        (outcome, Err(error)) => should_panic_leaked(outcome.is_err(), &error),
    }
}

/// Explains why a leaking `#[should_panic]` test fails although it may have panicked as expected.
fn should_panic_leaked(panicked: bool, error: &LeakError) {
    let body = if panicked {
        "its panic, reported above, is not re-raised"
    } else {
        "its body did not panic"
    };
    eprintln!(
        "leakcheck: this #[should_panic] test leaked; it is failed by returning normally instead of \
         panicking ({body})\n{error}"
    );
}
