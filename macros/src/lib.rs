//! The `#[leak_test]` attribute of [leakcheck](https://docs.rs/leakcheck). Use it as
//! `leakcheck::leak_test`; this crate is an implementation detail and its expansion calls
//! `leakcheck`'s hidden `__private` module, so it does not work on its own.
//!
//! Layout: [`leak_test`] is the entry point; `args.rs` parses the attribute's arguments into a
//! typed struct (its ignore keys come from `ignore_kinds.rs`, the table of ignore kinds that
//! leakcheck includes too); `expand.rs` checks the function and generates the test (unit-tested
//! on `proc_macro2`); `source.rs` finds a `#[test]` written above the attribute.

mod args;
mod compose;
mod expand;
mod ignore_kinds;
mod source;

use proc_macro::TokenStream;

/// Marks a test that fails if it leaks OS threads or tokio tasks.
///
/// The test runs as usual. When its body returns, leakcheck waits for the threads and tasks the
/// test started to finish, up to a settle deadline, and fails the test with a report of those
/// still alive. A test that fails on its own fails with its own panic, unchanged.
///
/// # Examples
///
/// ```ignore
/// use leakcheck::leak_test;
///
/// #[leak_test]
/// fn joins_its_worker() {
///     let worker = std::thread::spawn(|| 40 + 2);
///     assert_eq!(worker.join().unwrap(), 42);
/// }
///
/// // An async test gets a tokio runtime, as with `#[tokio::test]`.
/// #[leak_test(flavor = "multi_thread", worker_threads = 2, settle = "500ms")]
/// async fn awaits_its_task() -> Result<(), tokio::task::JoinError> {
///     let task = tokio::spawn(async { 40 + 2 });
///     assert_eq!(task.await?, 42);
///     Ok(())
/// }
///
/// // Threads this test cannot stop: ignore them by name.
/// #[leak_test(ignore_thread = ["metrics-exporter", "pool-*"])]
/// fn uses_a_global_pool() {}
/// ```
///
/// # Arguments
///
/// All optional, as `#[leak_test(key = value, ...)]`:
///
/// | argument | value | builder call |
/// |---|---|---|
/// | `settle` | a duration in humantime's format: `"500ms"`, `"1.5s"`, `"2 seconds"`, `"1m"` | `Options::settle` |
/// | `flavor` | `"current_thread"` (default) or `"multi_thread"`; async only | |
/// | `worker_threads` | an integer ≥ 1; async, `multi_thread` only | |
/// | `start_paused` | `true` or `false`: tokio's clock starts paused; async, `current_thread` only | |
/// | `ignore_thread` | a string or an array of strings | `Options::ignore_thread` per string |
/// | `ignore_top_function` | a string or an array of strings | `Options::ignore_top_function` |
/// | `ignore_any_function` | a string or an array of strings | `Options::ignore_any_function` |
/// | `ignore_creator` | a string or an array of strings | `Options::ignore_creator` |
/// | `ignore_spawn_site` | a string or an array of strings | `Options::ignore_spawn_site` |
/// | `ignore_process` | a string or an array of strings | `Options::ignore_process` |
/// | `ignore_current` | no value, or `true`/`false` | `Options::ignore_current` |
///
/// The options start from `Options::new()`, so the package's `[package.metadata.leakcheck]`
/// settings and `LEAKCHECK_*` environment variables apply too; arguments add to them and
/// override them. Mistakes are compile errors: an unknown key (with the nearest valid one), a
/// repeated key, a malformed duration, runtime settings on a sync fn, `worker_threads` without
/// `flavor = "multi_thread"`.
///
/// # With other test attributes
///
/// Write `#[leak_test]` **above** every other test attribute. Attribute macros expand from the
/// top down, and leakcheck must wrap the test that the others produce.
///
/// - `#[leak_test]` adds `#[test]` itself; an explicit `#[test]` below it is kept instead.
/// - `#[tokio::test]` below `#[leak_test]` is taken over: leakcheck reads its `flavor`,
///   `worker_threads` and `start_paused` and runs the same runtime `#[tokio::test]` would, with
///   its own hooks, a task check before shutdown and a bounded shutdown. Its other arguments
///   (`crate`, `unhandled_panic`, `name`) are rejected. Setting a key in both attributes is an
///   error.
/// - `#[should_panic]`, `#[ignore]` and `Result` return types work as with `#[test]`, and a leak
///   always fails the test: a `#[should_panic]` test that leaks fails (by returning normally,
///   which libtest reports as "did not panic as expected") with the report, whether or not its
///   body panicked; a test that returns `Err` and leaks fails with both the report and its `Err`.
/// - `#[rstest]`, `#[test_case]`, `#[test_matrix]`: they register the test and supply its
///   parameters, which must be plain names (`x: u32`).
/// - `#[test_log::test]` keeps initialising logs. On an async fn,
///   `#[test_log::test(tokio::test(...))]` has its `tokio::test(...)` taken over as above and is
///   left as `#[test_log::test]`; so is a `#[tokio::test]` beside a bare `#[test_log::test]`
///   (either order); bare `#[test_log::test]` alone runs on leakcheck's runtime.
/// - An async test attribute that builds another runtime (`#[async_std::test]`,
///   `#[test_log::test(actix_rt::test)]`, ...) is a compile error naming it: leakcheck must run
///   the test on its own tokio runtime to check its tasks.
///
/// The wrong order is a compile error where it can be detected: `#[tokio::test]` above
/// `#[leak_test]` (tokio's runtime would be dropped before leakcheck could see its tasks), and
/// `#[test]` above `#[leak_test]` (the test would be registered twice). The latter is found by
/// reading the source file above the attribute, whatever name it is imported under, also in a
/// `macro_rules!` body; this needs Rust 1.88 or later. Where the source does not show it (older
/// compilers, both attributes passed through a `macro_rules!` as `$(#[$attr])*`), the test's
/// second run fails at run time, saying why.
///
/// # Expansion
///
/// The function keeps its attributes, visibility, name and signature (made sync). Its body moves
/// unchanged into an inner function with the same signature, so `?`, `return` and type errors
/// behave as written:
///
/// ```ignore
/// #[::core::prelude::v1::test]
/// fn joins_its_worker() {
///     fn __leakcheck_body() { /* the body */ }
///     ::leakcheck::__private::run_sync(
///         "joins_its_worker",
///         ::leakcheck::__private::Options::new(),
///         ::leakcheck::__private::never_err, // for `-> Result<..>`: whether the value is an `Err`
///         __leakcheck_body,
///     )
/// }
/// ```
///
/// An async test's inner function is an `async fn`, and the call is
/// `run_async("name", options, Runtime { flavor, worker_threads, start_paused }, is_err, __leakcheck_body())`.
/// Parameters supplied by `#[rstest]` and the like are forwarded by name:
/// `run_sync("name", options, is_err, move || __leakcheck_body(x, y))`. A `#[should_panic]` test
/// calls `run_sync_should_panic` / `run_async_should_panic`, without `is_err`.
#[proc_macro_attribute]
pub fn leak_test(args: TokenStream, item: TokenStream) -> TokenStream {
    expand::leak_test(args.into(), item.into()).into()
}
