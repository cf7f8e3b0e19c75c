//! The per-test context: what a running `#[leak_test]` knows, on its thread, so that checks in
//! its body (`verify_none()`) use its options, baseline and name. Set by the attribute runtime,
//! read by the front ends; it calls nothing above it.

use std::cell::Cell;
use std::collections::HashSet;
use std::sync::{Arc, Mutex};

#[cfg(feature = "tokio")]
use crate::check::tasks::TaskScope;
use crate::check::threads::Scope;
use crate::options::Options;
use crate::probe::lineage;
#[cfg(feature = "tokio")]
use crate::probe::runtime_workers;

/// What a running `#[leak_test]` knows, on its thread.
pub(crate) struct Context {
    pub(crate) test: &'static str,
    pub(crate) options: Options,
    pub(crate) baseline: Vec<u64>,
    pub(crate) entry_tids: Option<HashSet<i32>>,
    pub(crate) runtime_threads: Option<Arc<Mutex<HashSet<u64>>>>,
    #[cfg_attr(not(feature = "tokio"), allow(dead_code))]
    pub(crate) task_baseline: Option<usize>,
}

thread_local! {
    /// The running `#[leak_test]`'s context, borrowed from the attribute runtime's frame for as
    /// long as [`installed`] runs; null outside one. A plain pointer: no drop glue, which would
    /// register a TLS destructor in every test thread.
    static CURRENT: Cell<*const Context> = const { Cell::new(std::ptr::null()) };
}

/// Runs `f` on the running `#[leak_test]`'s context, if there is one on this thread.
fn with_context<T>(f: impl FnOnce(&Context) -> T) -> Option<T> {
    let current = CURRENT.get();
    if current.is_null() {
        return None;
    }
    // SAFETY: a non-null context points to the `Context` that `installed` runs with on this
    // thread; each restores the previous pointer before it returns or unwinds, so
    // before the context can go away. The reference does not leave this call.
    Some(f(unsafe { &*current }))
}

/// Runs `f` (a test body) with `context` installed as this thread's running test; restores the
/// previous one afterwards, also when `f` panics. The context stays on the caller's stack: no
/// allocation per test. Scoped by a closure so that the pointer can never outlive the context.
pub(crate) fn installed<T>(context: &Context, f: impl FnOnce() -> T) -> T {
    /// Restores the previous context when dropped: on return, on a panic, and also when a forced
    /// unwind (`pthread_exit` in the body) passes through, which `catch_unwind` does not stop.
    struct Restore(*const Context);
    impl Drop for Restore {
        fn drop(&mut self) {
            CURRENT.set(self.0);
        }
    }
    let _restore = Restore(CURRENT.replace(context));
    f()
}

/// The options of the running `#[leak_test]`, or the defaults.
pub(crate) fn current_options() -> Options {
    with_context(|context| context.options.clone()).unwrap_or_else(Options::new)
}

/// The name reports blame: the running `#[leak_test]`, else libtest's name for the thread.
pub(crate) fn current_test_name() -> String {
    if let Some(test) = with_context(|context| context.test) {
        if let Some(name) = std::thread::current().name().filter(|name| name.ends_with(test)) {
            return name.to_string();
        }
        return test.to_string();
    }
    match std::thread::current().name() {
        Some(name) if name != "main" => name.to_string(),
        _ => "this check".to_string(),
    }
}

/// The threads an in-body check owns: the running test's, or (in a plain `#[test]`) everything
/// the calling thread started. Inside a runtime leakcheck did not build (a plain
/// `#[tokio::test]`), that runtime's own workers are not counted while it lives; they are found
/// exactly (see `probe::runtime_workers`), so a second runtime's workers still are.
pub(crate) fn thread_scope() -> Scope {
    in_context_scope().unwrap_or_else(|| {
        #[cfg_attr(not(feature = "tokio"), allow(unused_mut))]
        let mut scope = Scope::unentered();
        #[cfg(feature = "tokio")]
        if scope.entry_tids.is_none() {
            scope.runtime_threads = Some(Arc::new(Mutex::new(runtime_workers::own_workers(&scope.root))));
        }
        scope
    })
}

/// [`thread_scope`] from async code: finds the current runtime's workers without blocking it.
#[cfg(feature = "tokio")]
pub(crate) async fn thread_scope_async() -> Scope {
    if let Some(scope) = in_context_scope() {
        return scope;
    }
    let mut scope = Scope::unentered();
    if scope.entry_tids.is_none() {
        let workers = runtime_workers::own_workers_async(&scope.root).await;
        scope.runtime_threads = Some(Arc::new(Mutex::new(workers)));
    }
    scope
}

/// The scope of the running `#[leak_test]`, if any.
fn in_context_scope() -> Option<Scope> {
    with_context(|context| Scope {
        root: lineage::current_named(),
        baseline: context.baseline.clone(),
        runtime_threads: context.runtime_threads.clone(),
        entry_tids: context.entry_tids.clone(),
    })
}

/// The tasks an in-body async check owns.
#[cfg(feature = "tokio")]
pub(crate) fn task_scope() -> Option<TaskScope> {
    let mut scope = TaskScope::unentered()?;
    if let Some(baseline) = with_context(|context| context.task_baseline).flatten() {
        scope.set_baseline_count(baseline);
    }
    Some(scope)
}
