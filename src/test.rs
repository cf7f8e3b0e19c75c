//! The attribute layer: what `#[leak_test]` runs around a test body, and the per-test context
//! that in-body checks (`verify_none()` inside a `#[leak_test]`) read.

use std::cell::RefCell;
use std::collections::HashSet;
use std::future::Future;
use std::panic::{self, AssertUnwindSafe};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use futures::FutureExt as _;

use crate::__private::Runtime;
use crate::error::LeakError;
use crate::lineage;
use crate::options::Options;
use crate::tasks::{self, TaskFindings, TaskScope};
use crate::threads::Scope;
use crate::verify::{check_threads, merge};

/// What a running `#[leak_test]` knows, on its thread.
struct Context {
    test: &'static str,
    options: Options,
    baseline: HashSet<u64>,
    entry_tids: Option<HashSet<i32>>,
    runtime_threads: Option<Arc<Mutex<HashSet<u64>>>>,
    task_baseline: Option<usize>,
}

thread_local! {
    static CONTEXT: RefCell<Option<Rc<Context>>> = const { RefCell::new(None) };
}

fn context() -> Option<Rc<Context>> {
    CONTEXT.try_with(|slot| slot.borrow().clone()).ok().flatten()
}

/// Installs a context for the duration of a test body; restores the previous one on drop.
struct Entered(Option<Rc<Context>>);

impl Entered {
    fn new(context: Context) -> Entered {
        Entered(CONTEXT.with(|slot| slot.replace(Some(Rc::new(context)))))
    }
}

impl Drop for Entered {
    fn drop(&mut self) {
        let previous = self.0.take();
        let _ = CONTEXT.try_with(|slot| *slot.borrow_mut() = previous);
    }
}

/// The options of the running `#[leak_test]`, or the defaults.
pub(crate) fn current_options() -> Options {
    context().map_or_else(Options::new, |context| context.options.clone())
}

/// The name reports blame: the running `#[leak_test]`, else libtest's name for the thread.
pub(crate) fn current_test_name() -> String {
    if let Some(context) = context() {
        if let Some(name) = std::thread::current()
            .name()
            .filter(|name| name.ends_with(context.test))
        {
            return name.to_string();
        }
        return context.test.to_string();
    }
    match std::thread::current().name() {
        Some(name) if name != "main" => name.to_string(),
        _ => "this check".to_string(),
    }
}

/// The threads an in-body check owns: the running test's, or (in a plain `#[test]`) everything
/// the calling thread started.
pub(crate) fn thread_scope() -> Scope {
    match context() {
        Some(context) => Scope {
            root: lineage::current_named(),
            baseline: context.baseline.clone(),
            runtime_threads: context.runtime_threads.clone(),
            entry_tids: context.entry_tids.clone(),
            foreign_runtime: false,
        },
        None => {
            let mut scope = Scope::unentered();
            scope.foreign_runtime = tokio::runtime::Handle::try_current().is_ok();
            scope
        }
    }
}

/// The tasks an in-body async check owns.
pub(crate) fn task_scope() -> Option<TaskScope> {
    let mut scope = TaskScope::unentered()?;
    if let Some(baseline) = context().and_then(|context| context.task_baseline) {
        scope.set_baseline_count(baseline);
    }
    Some(scope)
}

/// Says once per process that `LEAKCHECK=off` disabled the checks.
pub(crate) fn say_disabled_once() {
    static SAID: AtomicBool = AtomicBool::new(false);
    if !SAID.swap(true, Ordering::Relaxed) {
        eprintln!("leakcheck: LEAKCHECK=off: leak checks are disabled in this process");
    }
}

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
    let (runtime, _probe) = match tasks::build_runtime(config, runtime_threads.clone()) {
        Ok(built) => built,
        Err(error) => panic!("leakcheck: failed to build the test's tokio runtime: {error}"),
    };
    let Some(settle) = settle else {
        let output = runtime.block_on(body);
        tasks::forget_runtime(&runtime);
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
    tasks::forget_runtime(&runtime);
    // Plain drop would wait forever for a `spawn_blocking` closure that never returns; that
    // thread is reported by the thread check below instead.
    runtime.shutdown_timeout(settle);
    scope.runtime_threads = None;
    let name = test_name(test);
    let threads = check_threads(&scope, &options, settle, &name);
    conclude(outcome, merge(threads, tasks, &options, settle, &name))
}

/// libtest's full name for the running test (its thread's name), else the function's name.
fn test_name(test: &'static str) -> String {
    match std::thread::current().name() {
        Some(name) if name.ends_with(test) => name.to_string(),
        _ => test.to_string(),
    }
}

/// The test's outcome: the original panic wins, with a leak as a note; else the leak fails it.
#[track_caller]
fn conclude<R>(outcome: std::thread::Result<R>, verdict: Result<(), LeakError>) -> R {
    match (outcome, verdict) {
        (Ok(value), Ok(())) => value,
        (Ok(_), Err(error)) => panic!("{error}"),
        (Err(payload), verdict) => {
            if let Err(error) = verdict {
                eprintln!("note: the test panicked (its panic is reported above) and also leaked:\n{error}");
            }
            panic::resume_unwind(payload)
        }
    }
}
