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

/// The checks, as methods of [`Options`]: front ends, so they live here rather than with the
/// builder in `options.rs` (which is below the check layer).
impl Options {
    /// Checks that every thread the calling thread started (directly or through threads it
    /// started) has finished, and that no child process it (or those threads) started still
    /// runs, waiting up to the settle deadline for those still finishing.
    ///
    /// Inside a `#[leak_test]`, threads alive at the test's entry are not counted.
    ///
    /// # Examples
    ///
    /// ```
    /// let worker = std::thread::spawn(|| 40 + 2);
    /// assert_eq!(worker.join().unwrap(), 42);
    /// assert!(leakcheck::Options::new().find().is_ok());
    /// ```
    ///
    /// # Errors
    ///
    /// A [`LeakError`] holding the report if threads survived the deadline, or naming a
    /// malformed `LEAKCHECK_*` environment variable.
    pub fn find(&self) -> Result<(), LeakError> {
        find(self)
    }

    /// [`Options::find`] plus the current tokio runtime's tasks (not counting the calling task),
    /// settling without blocking the runtime. Outside a runtime it checks threads only.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let task = tokio::spawn(async { 40 + 2 });
    /// assert_eq!(task.await.unwrap(), 42);
    /// assert!(leakcheck::Options::new().find_async().await.is_ok());
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// As [`Options::find`], for threads and tasks.
    #[cfg(feature = "tokio")]
    #[cfg_attr(docsrs, doc(cfg(feature = "tokio")))]
    pub async fn find_async(&self) -> Result<(), LeakError> {
        find_async(self).await
    }

    /// Like [`Options::find`], but panics with the report.
    ///
    /// # Examples
    ///
    /// ```
    /// std::thread::scope(|s| {
    ///     s.spawn(|| ());
    /// });
    /// leakcheck::Options::new().verify_none();
    /// ```
    ///
    /// # Panics
    ///
    /// If threads survived the deadline (the message is the report), or an environment variable
    /// is malformed.
    #[track_caller]
    pub fn verify_none(&self) {
        if let Err(error) = self.clone().at(std::panic::Location::caller()).find() {
            error.raise(std::panic::Location::caller());
        }
    }

    /// Like [`Options::find_async`], but panics with the report.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// tokio::spawn(async {}).await.unwrap();
    /// leakcheck::Options::new().verify_none_async().await;
    /// # }
    /// ```
    ///
    /// # Panics
    ///
    /// If threads or tasks survived the deadline, or an environment variable is malformed.
    #[cfg(feature = "tokio")]
    #[cfg_attr(docsrs, doc(cfg(feature = "tokio")))]
    #[track_caller]
    pub fn verify_none_async(&self) -> impl std::future::Future<Output = ()> + '_ {
        let location = std::panic::Location::caller();
        async move {
            if let Err(error) = self.clone().at(location).find_async().await {
                error.raise(location);
            }
        }
    }
}
