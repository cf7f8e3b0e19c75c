//! The checks behind [`Options::find`] and [`Options::find_async`] (a front end): resolve the
//! options' settings once, read the per-test context for scope and name, run the thread, task and
//! child checks with those settings, and merge their verdicts.
//!
//! `find*` return `Result<(), LeakError>`; only `verify_*` (and the attribute) panic.

use crate::check::children::{self, ChildScope};
#[cfg(feature = "tokio")]
use crate::check::tasks::TaskFindings;
use crate::check::{check_threads, merge_children};
#[cfg(feature = "tokio")]
use crate::check::{check_threads_async, merge};
use crate::context;
use crate::options::Options;
use crate::report::error::LeakError;

/// [`Options::find`].
pub(crate) fn find(options: &Options) -> Result<(), LeakError> {
    let Some(settings) = options.settings()? else {
        return Ok(());
    };
    let scope = context::thread_scope();
    let test = context::current_test_name();
    let checked = std::time::Instant::now();
    let threads = check_threads(&scope, options, &settings, &test);
    let found = children::find(&ChildScope::unentered(), options, &settings, checked);
    merge_children(threads, found, options, &settings, &test)
}

/// [`Options::find_async`].
#[cfg(feature = "tokio")]
pub(crate) async fn find_async(options: &Options) -> Result<(), LeakError> {
    let Some(settings) = options.settings()? else {
        return Ok(());
    };
    let test = context::current_test_name();
    let checked = std::time::Instant::now();
    let tasks = match context::task_scope() {
        Some(scope) => crate::check::tasks::find(&scope, options, &settings).await,
        None => TaskFindings::default(),
    };
    let scope = context::thread_scope_async().await;
    let threads = check_threads_async(&scope, options, &settings, &test).await;
    let verdict = merge(threads, tasks, options, &settings, &test);
    let found = children::find_async(&ChildScope::unentered(), options, &settings, checked).await;
    merge_children(verdict, found, options, &settings, &test)
}
