//! What the `#[leak_test]` expansion calls. Not public API: names and signatures may change in any
//! release.

#[cfg(feature = "tokio")]
use std::future::Future;

pub use crate::front::attribute::Test;
pub use crate::Options;
#[cfg(feature = "tokio")]
pub use ::tokio;

pub use crate::model::{Flavor, Runtime};

/// Runs a sync test body between an entry snapshot and the settled exit check. `is_err` tells
/// whether the body's value is an `Err` (see [`IsErr`]).
#[track_caller]
#[inline(always)]
pub fn run_sync<R>(
    test: &'static Test,
    options: Options,
    is_err: fn(&R) -> bool,
    body: impl FnOnce() -> R,
) -> R {
    crate::front::attribute::run_sync(test, options, is_err, body)
}

/// [`run_sync`] for a `#[should_panic]` test: a leak fails it by returning normally.
#[track_caller]
#[inline(always)]
pub fn run_sync_should_panic(test: &'static Test, options: Options, body: impl FnOnce()) {
    crate::front::attribute::run_sync_should_panic(test, options, body)
}

/// Builds the test's runtime, runs the body on it, checks tasks inside it, shuts it down with a
/// bounded wait, then checks threads.
#[cfg(feature = "tokio")]
#[track_caller]
#[inline(always)]
pub fn run_async<F: Future>(
    test: &'static Test,
    options: Options,
    runtime: Runtime,
    is_err: fn(&F::Output) -> bool,
    body: F,
) -> F::Output {
    crate::front::attribute::run_async(test, options, runtime, is_err, body)
}

/// [`run_async`] for a `#[should_panic]` test: a leak fails it by returning normally.
#[cfg(feature = "tokio")]
#[track_caller]
#[inline(always)]
pub fn run_async_should_panic<F: Future<Output = ()>>(
    test: &'static Test,
    options: Options,
    runtime: Runtime,
    body: F,
) {
    crate::front::attribute::run_async_should_panic(test, options, runtime, body)
}

/// `is_err` for return types that are never an `Err` (`()`, `impl Trait`).
pub fn never_err<R>(_: &R) -> bool {
    false
}

/// Wraps a test's return value to ask whether it is an `Err`, by autoref specialization: the
/// expansion calls `(&Output(&value)).__leakcheck_is_err()` where the value's type is known,
/// which picks [`IsErr`] for a `Result` and [`NotErr`] for anything else.
pub struct Output<'a, T>(pub &'a T);

/// A `Result` return value: `Err` is an error.
pub trait IsErr {
    /// Whether the value is an `Err`.
    fn __leakcheck_is_err(&self) -> bool;
}

impl<T, E> IsErr for Output<'_, Result<T, E>> {
    fn __leakcheck_is_err(&self) -> bool {
        self.0.is_err()
    }
}

/// Any other return value: never an error.
pub trait NotErr {
    /// Always `false`.
    fn __leakcheck_is_err(&self) -> bool;
}

impl<T> NotErr for &Output<'_, T> {
    fn __leakcheck_is_err(&self) -> bool {
        false
    }
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
    _test: &'static Test,
    _options: Options,
    _runtime: Runtime,
    _is_err: fn(&F::Output) -> bool,
    _body: F,
) -> F::Output {
    unreachable!("the `TokioFeature` bound cannot be met without the `tokio` feature")
}

/// [`run_async`] for a `#[should_panic]` test, without the `tokio` feature: a compile error too.
#[cfg(not(feature = "tokio"))]
pub fn run_async_should_panic<F: std::future::Future<Output = ()> + TokioFeature>(
    _test: &'static Test,
    _options: Options,
    _runtime: Runtime,
    _body: F,
) {
    unreachable!("the `TokioFeature` bound cannot be met without the `tokio` feature")
}

pub use ::ctor;

/// Installs the whole-binary check (see [`crate::check_binary!`]).
pub fn install_binary_check(options: Options, always: bool) {
    crate::front::binary::install(options, always);
}
