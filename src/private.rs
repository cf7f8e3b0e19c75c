//! What the `#[leak_test]` expansion calls. Not public API: names and signatures may change in any
//! release.

#[cfg(feature = "tokio")]
use std::future::Future;

pub use crate::Options;
#[cfg(feature = "tokio")]
pub use ::tokio;

pub use crate::model::{Flavor, Runtime};

/// Runs a sync test body between an entry snapshot and the settled exit check.
#[track_caller]
pub fn run_sync<R>(test: &'static str, options: Options, body: impl FnOnce() -> R) -> R {
    crate::attribute::run_sync(test, options, body)
}

/// Builds the test's runtime, runs the body on it, checks tasks inside it, shuts it down with a
/// bounded wait, then checks threads.
#[cfg(feature = "tokio")]
#[track_caller]
pub fn run_async<F: Future>(test: &'static str, options: Options, runtime: Runtime, body: F) -> F::Output {
    crate::attribute::run_async(test, options, runtime, body)
}

/// Marks builds with leakcheck's `tokio` feature; an async `#[leak_test]` needs one.
#[diagnostic::on_unimplemented(
    message = "an async `#[leak_test]` needs leakcheck's `tokio` feature",
    label = "this test is async",
    note = "enable it in Cargo.toml: `leakcheck = {{ version = \"0.1\", features = [\"tokio\"] }}` (a default feature: drop `default-features = false`)"
)]
pub trait TokioFeature {}

/// Without the `tokio` feature an async `#[leak_test]` does not compile: the bound below has no
/// implementation, and its message says which feature to enable.
#[cfg(not(feature = "tokio"))]
pub fn run_async<F: std::future::Future + TokioFeature>(
    _test: &'static str,
    _options: Options,
    _runtime: Runtime,
    _body: F,
) -> F::Output {
    unreachable!("the `TokioFeature` bound cannot be met without the `tokio` feature")
}

pub use ::ctor;

/// Installs the whole-binary check (see [`crate::check_binary!`]).
pub fn install_binary_check(options: Options, always: bool) {
    crate::binary::install(options, always);
}
