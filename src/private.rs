//! What the `#[leak_test]` expansion calls. Not public API: names and signatures may change in any
//! release.

use std::future::Future;

pub use crate::Options;
pub use ::tokio;

/// The runtime flavor of an async `#[leak_test]`, as in `#[tokio::test(flavor = "...")]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flavor {
    /// `flavor = "current_thread"` (the default, as for `#[tokio::test]`).
    CurrentThread,
    /// `flavor = "multi_thread"`.
    MultiThread,
}

/// The runtime an async `#[leak_test]` builds for its body.
#[derive(Clone, Copy, Debug)]
pub struct Runtime {
    /// Scheduler flavor.
    pub flavor: Flavor,
    /// `worker_threads = N` (multi_thread only).
    pub worker_threads: Option<usize>,
    /// `start_paused = true`: the clock starts paused, as with `#[tokio::test(start_paused = true)]`.
    pub start_paused: bool,
}

/// Runs a sync test body between an entry snapshot and the settled exit check.
#[track_caller]
pub fn run_sync<R>(test: &'static str, options: Options, body: impl FnOnce() -> R) -> R {
    crate::test::run_sync(test, options, body)
}

/// Builds the test's runtime, runs the body on it, checks tasks inside it, shuts it down with a
/// bounded wait, then checks threads.
#[track_caller]
pub fn run_async<F: Future>(test: &'static str, options: Options, runtime: Runtime, body: F) -> F::Output {
    crate::test::run_async(test, options, runtime, body)
}

pub use ::ctor;

/// Installs the whole-binary check (see [`crate::check_binary!`]).
pub fn install_binary_check(options: Options, always: bool) {
    crate::binary::install(options, always);
}
