//! The per-test context: what a running `#[leak_test]` knows, on its thread, so that checks in
//! its body (`verify_none()`) use its options, baseline and name. Set by the attribute runtime,
//! read by the front ends; it calls nothing above it.

use std::cell::Cell;
use std::collections::HashSet;
use std::rc::Rc;
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
    pub(crate) baseline: HashSet<u64>,
    pub(crate) entry_tids: Option<HashSet<i32>>,
    pub(crate) runtime_threads: Option<Arc<Mutex<HashSet<u64>>>>,
    #[cfg_attr(not(feature = "tokio"), allow(dead_code))]
    pub(crate) task_baseline: Option<usize>,
}

thread_local! {
    /// The running `#[leak_test]`'s context, borrowed from its [`Entered`] (which outlives every
    /// use on this thread). A plain pointer: a thread-local with drop glue would register a TLS
    /// destructor in every test thread, a cost paid per test.
    static CONTEXT: Cell<*const Context> = const { Cell::new(std::ptr::null()) };
}

fn context() -> Option<Rc<Context>> {
    let current = CONTEXT.get();
    if current.is_null() {
        return None;
    }
    // SAFETY: a non-null `CONTEXT` is the `Rc` an `Entered` on this thread holds until it
    // restores the previous pointer; this adds a reference of our own.
    unsafe {
        Rc::increment_strong_count(current);
        Some(Rc::from_raw(current))
    }
}

/// Installs a context for the duration of a test body; restores the previous one on drop.
pub(crate) struct Entered {
    previous: *const Context,
    own: Option<Rc<Context>>,
}

impl Entered {
    pub(crate) fn new(context: Context) -> Entered {
        let own = Rc::new(context);
        Entered {
            previous: CONTEXT.replace(Rc::as_ptr(&own)),
            own: Some(own),
        }
    }

    /// Leaves the context, restoring the previous one; returns this one's options (moved out,
    /// unless something still holds the context: then a copy).
    pub(crate) fn exit(mut self) -> Options {
        self.restore();
        match self.own.take().map(Rc::try_unwrap) {
            Some(Ok(own)) => own.options,
            Some(Err(shared)) => shared.options.clone(),
            None => Options::new(),
        }
    }

    fn restore(&mut self) {
        CONTEXT.set(self.previous);
    }
}

impl Drop for Entered {
    fn drop(&mut self) {
        if self.own.is_some() {
            self.restore();
        }
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
    context().map(|context| Scope {
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
    if let Some(baseline) = context().and_then(|context| context.task_baseline) {
        scope.set_baseline_count(baseline);
    }
    Some(scope)
}
