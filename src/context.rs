//! The per-test context: what a running `#[leak_test]` knows, on its thread, so that checks in
//! its body (`verify_none()`) use its options, baseline and name. Set by the attribute runtime,
//! read by the front ends; it calls nothing above it.

use std::cell::RefCell;
use std::collections::HashSet;
use std::rc::Rc;
use std::sync::{Arc, Mutex};

#[cfg(feature = "tokio")]
use crate::check::tasks::TaskScope;
use crate::check::threads::Scope;
use crate::options::Options;
use crate::probe::lineage;

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
    static CONTEXT: RefCell<Option<Rc<Context>>> = const { RefCell::new(None) };
}

fn context() -> Option<Rc<Context>> {
    CONTEXT.try_with(|slot| slot.borrow().clone()).ok().flatten()
}

/// Installs a context for the duration of a test body; restores the previous one on drop.
pub(crate) struct Entered(Option<Rc<Context>>);

impl Entered {
    pub(crate) fn new(context: Context) -> Entered {
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
            #[cfg_attr(not(feature = "tokio"), allow(unused_mut))]
            let mut scope = Scope::unentered();
            #[cfg(feature = "tokio")]
            {
                scope.foreign_runtime = tokio::runtime::Handle::try_current().is_ok();
            }
            scope
        }
    }
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
