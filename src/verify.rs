//! The checks: [`Options::find`] and [`Options::verify_none`], and their async forms.
//!
//! `find*` return `Result<(), LeakError>`; only `verify_*` (and the attribute) panic.

use std::time::Duration;

use crate::error::LeakError;
use crate::options::Options;
use crate::report::Report;
use crate::tasks::TaskFindings;
use crate::threads::{self, Scope};
use crate::{config, settle, test};

impl Options {
    /// Checks that every thread the calling thread started (directly or through threads it
    /// started) has finished, waiting up to the settle deadline for those still finishing.
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
        let Some(settle) = self.settle_or_off()? else {
            return Ok(());
        };
        let scope = test::thread_scope();
        check_threads(&scope, self, settle, &test::current_test_name())
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
    pub async fn find_async(&self) -> Result<(), LeakError> {
        let Some(settle) = self.settle_or_off()? else {
            return Ok(());
        };
        let test = test::current_test_name();
        let tasks = match test::task_scope() {
            Some(scope) => crate::tasks::find(&scope, self, settle).await,
            None => TaskFindings::default(),
        };
        let scope = test::thread_scope();
        let candidates = settle::settle_async(settle, || unhidden_candidates(&scope, self)).await;
        let thread_result = if candidates.is_empty() && !self.is_verbose() {
            Ok(())
        } else {
            report_threads(&scope, self, threads::candidates(&scope, self), &test)
        };
        merge(thread_result, tasks, self, settle, &test)
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
        if let Err(error) = self.find() {
            panic!("{error}");
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
    #[track_caller]
    pub fn verify_none_async(&self) -> impl std::future::Future<Output = ()> + '_ {
        let location = std::panic::Location::caller();
        async move {
            if let Err(error) = self.find_async().await {
                panic!("{error}\n(leakcheck check at {location})");
            }
        }
    }

    /// The settle deadline, or `None` when `LEAKCHECK=off`.
    pub(crate) fn settle_or_off(&self) -> Result<Option<Duration>, LeakError> {
        let config = config::get().map_err(LeakError::config)?;
        if let Some(message) = crate::stack::env_error() {
            return Err(LeakError::config(message));
        }
        if !config.enabled {
            test::say_disabled_once();
            return Ok(None);
        }
        Ok(Some(self.settle.unwrap_or(config.settle)))
    }

    /// The settle deadline these options give (for reports; ignores `LEAKCHECK=off`).
    pub(crate) fn settle_or_default(&self) -> Duration {
        self.settle
            .or(config::get().ok().map(|config| config.settle))
            .unwrap_or(config::DEFAULT_SETTLE)
    }

    /// Whether reports list what rules hid.
    pub(crate) fn is_verbose(&self) -> bool {
        self.verbose
            .or(config::get().ok().map(|c| c.verbose))
            .unwrap_or(false)
    }

    pub(crate) fn report(&self, test: &str, settle: Duration) -> Report {
        let config = config::get().ok();
        Report {
            test: test.to_string(),
            settle,
            full_stacks: self
                .full_stacks
                .or(config.map(|c| c.full_stacks))
                .unwrap_or(false),
            verbose: self.is_verbose(),
            ..Report::default()
        }
    }
}

/// The thread side of a check: settle on the cheap look, then describe what is left once and
/// apply the ignore rules (stack capture and symbol resolution are paid only by a leak).
pub(crate) fn check_threads(
    scope: &Scope,
    options: &Options,
    settle: Duration,
    test: &str,
) -> Result<(), LeakError> {
    let candidates = settle::settle(settle, || unhidden_candidates(scope, options));
    if candidates.is_empty() && !options.is_verbose() {
        return Ok(());
    }
    // Describe everything still alive, so a verbose report can list what the rules hid.
    report_threads(scope, options, threads::candidates(scope, options), test)
}

/// The candidates, or none if rules that need no stack hide all of them.
pub(crate) fn unhidden_candidates(scope: &Scope, options: &Options) -> Vec<threads::Candidate> {
    let candidates = threads::candidates(scope, options);
    if candidates
        .iter()
        .all(|candidate| threads::hidden_without_stack(candidate, options))
    {
        return Vec::new();
    }
    candidates
}

/// Describes settled candidates; those that finished meanwhile are dropped.
pub(crate) fn report_threads(
    scope: &Scope,
    options: &Options,
    candidates: Vec<threads::Candidate>,
    test: &str,
) -> Result<(), LeakError> {
    if candidates.is_empty() {
        return Ok(());
    }
    let (mut survivors, hidden) = threads::describe(&candidates, options);
    let still_alive = threads::candidates(scope, options);
    survivors.retain(|survivor| still_alive.iter().any(|c| c.tid() == Some(survivor.id as i32)));
    let mut report = options.report(test, options.settle_or_default());
    report.survivors = survivors;
    report.hidden = hidden;
    report.notes.extend(scope.mode_note());
    finish(report)
}

/// Combines a thread verdict and task findings into one verdict.
pub(crate) fn merge(
    threads: Result<(), LeakError>,
    tasks: TaskFindings,
    options: &Options,
    settle: Duration,
    test: &str,
) -> Result<(), LeakError> {
    if tasks.is_empty() {
        return threads;
    }
    let mut report = match threads {
        Ok(()) => options.report(test, settle),
        Err(LeakError {
            kind: crate::error::ErrorKind::Leak(report),
        }) => *report,
        Err(other) => return Err(other),
    };
    tasks.into_report(&mut report);
    report.survivors.sort_by_key(|survivor| survivor.kind);
    finish(report)
}

/// Writes the JSON line for a leak and turns the report into the verdict. A report whose
/// survivors were all hidden by rules is a pass.
fn finish(report: Report) -> Result<(), LeakError> {
    if !report.is_leak() {
        return Ok(());
    }
    if let Err(message) = report.write_json() {
        eprintln!("{message}");
    }
    Err(LeakError::leak(report))
}
