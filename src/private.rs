//! What the `#[leak_test]` expansion calls. Not public API: names and signatures may change in any
//! release.

use std::future::Future;

pub use crate::Options;
pub use ::tokio;

pub use crate::model::{Flavor, Runtime};

/// Runs a sync test body between an entry snapshot and the settled exit check.
#[track_caller]
pub fn run_sync<R>(test: &'static str, options: Options, body: impl FnOnce() -> R) -> R {
    crate::attribute::run_sync(test, options, body)
}

/// Builds the test's runtime, runs the body on it, checks tasks inside it, shuts it down with a
/// bounded wait, then checks threads.
#[track_caller]
pub fn run_async<F: Future>(test: &'static str, options: Options, runtime: Runtime, body: F) -> F::Output {
    crate::attribute::run_async(test, options, runtime, body)
}

pub use ::ctor;

/// Installs the whole-binary check (see [`crate::check_binary!`]).
pub fn install_binary_check(options: Options, always: bool) {
    crate::binary::install(options, always);
}
