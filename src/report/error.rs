//! [`LeakError`]: what a failed check returns.

use std::fmt;

use crate::model::Kind;
use crate::report::Report;

/// Threads, tasks or child processes that outlived their test, or a check that could not run.
///
/// Its `Display` is the full report: a summary line, one block per group of identical survivors,
/// then the likely cause and fix.
///
/// # Examples
///
/// ```
/// match leakcheck::Options::new().find() {
///     Ok(()) => {}
///     Err(error) => panic!("{error}"),
/// }
/// ```
#[derive(Clone, Debug)]
pub struct LeakError {
    pub(crate) kind: ErrorKind,
}

#[derive(Clone, Debug)]
pub(crate) enum ErrorKind {
    Leak(Box<Report>),
    /// A malformed environment variable, or another reason the check could not run.
    Config(String),
}

impl LeakError {
    pub(crate) fn leak(report: Report) -> LeakError {
        LeakError {
            kind: ErrorKind::Leak(Box::new(report)),
        }
    }

    /// Fails the calling test at `location` (the user's line) with this error as the panic
    /// message, without a Rust backtrace of leakcheck's internals: the message is printed as the
    /// panic hook would print it, then the unwind starts with `resume_unwind` (which skips the
    /// hook). The payload is the message as a `String`, so `#[should_panic(expected = "...")]`
    /// still matches it.
    pub(crate) fn raise(self, location: &std::panic::Location<'_>) -> ! {
        let message = self.to_string();
        let thread = std::thread::current();
        let name = thread.name().unwrap_or("<unnamed>");
        eprintln!("\nthread '{name}' panicked at {location}:\n{message}");
        std::panic::resume_unwind(Box::new(message))
    }

    pub(crate) fn config(message: String) -> LeakError {
        LeakError {
            kind: ErrorKind::Config(message),
        }
    }

    /// How many threads the check found alive (0 for a configuration error).
    ///
    /// # Examples
    ///
    /// ```
    /// assert!(leakcheck::Options::new().find().is_ok());
    /// ```
    pub fn threads(&self) -> usize {
        self.count(Kind::Thread)
    }

    /// How many tasks the check found alive (0 for a configuration error).
    ///
    /// # Examples
    ///
    /// ```
    /// assert!(leakcheck::Options::new().find().is_ok());
    /// ```
    pub fn tasks(&self) -> usize {
        match &self.kind {
            ErrorKind::Leak(report) => {
                self.count(Kind::Task) + report.task_count.as_ref().map_or(0, |t| t.alive)
            }
            ErrorKind::Config(_) => 0,
        }
    }

    /// How many child processes the check found still running (0 for a configuration error).
    ///
    /// # Examples
    ///
    /// ```
    /// let mut child = std::process::Command::new("true").spawn().unwrap();
    /// child.wait().unwrap();
    /// assert!(leakcheck::Options::new().find().is_ok());
    /// ```
    pub fn processes(&self) -> usize {
        self.count(Kind::Process)
    }

    fn count(&self, kind: Kind) -> usize {
        match &self.kind {
            ErrorKind::Leak(report) => report.survivors.iter().filter(|s| s.kind == kind).count(),
            ErrorKind::Config(_) => 0,
        }
    }

    /// The report as one line of JSON, as `LEAKCHECK_JSON` files hold them (`None` for a
    /// configuration error).
    ///
    /// # Examples
    ///
    /// ```
    /// assert!(leakcheck::Options::new().find().is_ok());
    /// ```
    pub fn to_json(&self) -> Option<String> {
        match &self.kind {
            ErrorKind::Leak(report) => Some(report.to_json().trim_end().to_string()),
            ErrorKind::Config(_) => None,
        }
    }
}

impl fmt::Display for LeakError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            ErrorKind::Leak(report) => report.fmt(f),
            ErrorKind::Config(message) => f.write_str(message),
        }
    }
}

impl std::error::Error for LeakError {}
