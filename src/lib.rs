//! Fail tests that leak OS threads, tokio tasks or child processes, with a report that points at
//! the line to fix.
//!
//! leakcheck is the Rust counterpart of Go's [goleak]: a thread or task that a test starts and
//! that is still alive when the test ends fails the test, with one block per group of identical
//! survivors saying where each is stuck, where it was created, and the likely cause and fix.
//!
//! ```toml
//! [dev-dependencies]
//! leakcheck = "0.1"
//! ```
//!
//! # Quick start
//!
//! ```
//! use leakcheck::leak_test;
//!
//! #[leak_test]
//! fn joins_its_worker() {
//!     let (jobs, inbox) = std::sync::mpsc::channel::<u32>();
//!     let worker = std::thread::spawn(move || inbox.iter().sum::<u32>());
//!     jobs.send(2).unwrap();
//!     drop(jobs); // closing the channel lets the worker finish
//!     assert_eq!(worker.join().unwrap(), 2);
//! }
//!
//! #[leak_test(flavor = "multi_thread", worker_threads = 2)]
//! async fn awaits_its_task() {
//!     let task = tokio::spawn(async { 40 + 2 });
//!     assert_eq!(task.await.unwrap(), 42);
//! }
//! # fn main() {}
//! ```
//!
//! In a plain `#[test]`, or in the middle of a test body:
//!
//! ```
//! std::thread::scope(|s| {
//!     s.spawn(|| ());
//! });
//! leakcheck::verify_none(); // fails if a thread this test started is still alive
//! ```
//!
//! The [guide](crate::_guide) explains reports, every option and setting, the environment, child
//! processes, zero-annotation runs, composition with other test attributes, and the limits.
//!
//! # How it works
//!
//! - **Threads.** leakcheck interposes `pthread_create` (Linux, glibc): every thread records which
//!   thread created it and a raw creation backtrace. A test owns exactly the threads its thread
//!   started, directly or through threads they started, so parallel tests under `cargo test`
//!   never blame each other, and a clean check costs one lookup of the test's own threads. Where
//!   interposition does not take effect, it falls back to a before/after diff of the process's
//!   threads and says so in the report. On Windows the executable's import of `CreateThread` is
//!   hooked to the same effect, and on macOS libpthread's introspection hook (compiled, not run
//!   in CI; see the [guide's limits](crate::_guide::limits)).
//! - **Tasks.** An async `#[leak_test]` builds the test's runtime, checks its tasks inside it
//!   before shutting it down (tokio's runtime metrics; spawn sites with `--cfg tokio_unstable`;
//!   async stacks with the `taskdump` feature too), shuts it down with a bounded wait, then checks
//!   threads.
//! - **Child processes.** leakcheck also interposes `posix_spawn`, `posix_spawnp`, `fork` and
//!   `vfork` (on Windows, hooks the executable's import of `CreateProcessW`): a test owns the child
//!   processes its threads started, and one still running at the end fails it (a child that exited
//!   unwaited, a zombie, does not). Leaked children are killed and reaped after the report
//!   (`LEAKCHECK_KILL_CHILDREN=off` keeps them).
//! - **Settle.** Work that is finishing gets time to finish: a check retries with backoff up to a
//!   deadline (2 s by default; `#[leak_test(settle = "5s")]`, [`Options::settle`] or
//!   `LEAKCHECK_SETTLE`, or `settle` in the package's `[package.metadata.leakcheck]`). A clean pass
//!   never waits, and a leak fails as soon as its survivors provably cannot end before the
//!   deadline (every thread that could wake one is blocked with no wake-up of its own due).
//! - **Reports.** Each surviving thread's current stack is captured (with a signal on Linux, by
//!   suspending it on macOS), library frames are folded, identical survivors are grouped, and a
//!   hint names the likely cause.
//!
//! # How the crate is built
//!
//! Layers, top to bottom; a module may use the layers below it, never one above. Each layer is
//! one file or folder of `src/`:
//!
//! | layer | where | what it holds |
//! |---|---|---|
//! | front ends | `lib.rs`, `private.rs`, `front/` (`attribute` + `once`, `verify`, `binary`, `dump` + `children`) | the public API: the attribute runtime, `verify_none*`, `check_binary!`, `dump()`; `__private` is the macro expansion's door |
//! | per-test context | `context.rs` | what a running `#[leak_test]` knows on its thread (options, baseline, name) |
//! | check | `check.rs` (verdict), `check/` (`settle`, `early`, `threads`, `tasks`, `children`, `untracked`, `wait`, `ownership`) | settle-and-retry and its early verdict, find candidates, classify their waits across the settle window, describe them once, apply the rules |
//! | rules | `options.rs`, `rules.rs` | the `Options` builder and the ignore rules, built-in ones included |
//! | report | `report.rs` (text), `report/` (`json`, `names`, `members`, `wait_text`, `hints` + `idioms`, `children`, `github`, `error`) | rendering, grouping, rules to paste, CI annotations and cause-and-fix hints; `LeakError` carries a report |
//! | probes | `probe.rs`, `probe/` (`lineage` + `node`, `registry`, `interpose`, `events`, `handoff`; `children` + `interpose`, `proc`; `fork`; `procfs`; `stack` + `protocol`, `safety`, `handler`, `slots`, `unwinder`, `suspend`, `frame_pointers`, `windows`, `copy`; `wakeup`; `symbols`, `symtab`; `unwind` + `walk`, `cfi`, `modules`, `step`; `singleton`; `tasks`, `runtime_workers`; `startup`; `source` + `tokens`, `chains`; `sys` + `linux`, `windows` (+ `windows_hook`, `windows_children`, `windows_wait`), `macos`, `fallback`) | what the OS, tokio and the user's source tell; nothing of options or reports. `sys` is the platform interface, its backend chosen by `cfg` there; Linux's own code (`procfs`, `stack`'s signal protocol, the interposers) and the suspend-and-copy backends of macOS and Windows sit behind it in their own files, `cfg`s in `probe/` only |
//! | settings | `config.rs`, `config/project.rs` | the process's settings, read once: defaults, the package's `[package.metadata.leakcheck]`, the `LEAKCHECK_*` environment |
//! | model | `model.rs`, `model/` (`frame` + `names`, `location`; `duration`), the ignore kinds | plain data and pure functions every layer shares |
//! | guide | `_guide/` (Markdown in `docs/guide/`) | the user's manual, no code |
//!
//! The path of one check, from attribute to verdict: the expansion of `#[leak_test]` calls
//! `__private::run_sync` (`front::attribute::run_sync`). When the test's thread owns nothing yet (the
//! usual case), it installs the `context::Context`, runs the body under `catch_unwind` and
//! reads two counters of the thread's lineage node again; a clean pass ends there.
//! Otherwise, or when that look finds something, the attribute takes a `check::threads::Scope`
//! (the test thread's lineage node and what it already started), runs the body, then calls
//! `check::check_threads`. That settles on
//! `check::threads::candidates` (one registry lookup in `probe::lineage`; a clean pass ends here,
//! without sleeping; a look that finds candidates takes the first kernel reading of their wait,
//! `check::wait`, and between looks `check::early` watches the process's threads, ending the
//! settle when none can end a survivor before the deadline), and only for what survives the deadline describes each thread
//! (`probe::procfs` kernel state and the second reading, `probe::stack` capture,
//! `probe::symbols`), applies `rules`, and
//! builds a `report::Report`, which `report::error::LeakError` carries back to the attribute, whose
//! verdict fails the test. An async test does the same for tasks first (`check::tasks`), inside
//! its runtime. Child processes come last (`check::children::find`, settling on one lookup in
//! `probe::children`), and `check::merge_children` adds them to the same report.
//!
//! Settings flow one way. `config` reads the defaults, the package's
//! `[package.metadata.leakcheck]` (`config::project`) and the `LEAKCHECK_*` environment once per process
//! into a base `config::Settings`; a check lays its own (attribute arguments, `Options` calls) over
//! it once, in `Options::settings`, and passes the result down to `check::check_threads`, the
//! settle loop and the report. The kinds of ignore rule are one table (`model::IgnoreKind`, in
//! `macros/src/ignore_kinds.rs`, which both crates compile), from which the attribute's keys, the
//! project's keys, the `Options` methods, the rules and the paste-ready rule text all derive.
//!
//! [goleak]: https://github.com/uber-go/goleak

#![warn(missing_docs)]
// docs.rs: badges naming the feature or cfg an item needs.
#![cfg_attr(docsrs, feature(doc_cfg))]

// The layers: see "How the crate is built" in the crate docs above.
mod check;
mod config;
mod context;
mod front;
mod model;
mod options;
mod probe;
mod report;
mod rules;

#[doc(hidden)]
#[path = "private.rs"]
pub mod __private;

pub mod _guide;

pub use front::dump::{dump, Dump, DumpedChild, DumpedThread};
pub use leakcheck_macros::leak_test;
pub use options::Options;
pub use report::error::LeakError;

/// Fails (panics) if threads started by the calling thread are still alive after settling.
///
/// Inside a `#[leak_test]`, it uses the attribute's options and ignores threads that were alive
/// when the test started; in a plain `#[test]`, every thread the test's thread started counts.
///
/// # Examples
///
/// ```
/// let worker = std::thread::spawn(|| ());
/// worker.join().unwrap();
/// leakcheck::verify_none();
/// ```
///
/// # Panics
///
/// With the leak report as the message, if threads survived the settle deadline; or if a
/// `LEAKCHECK_*` environment variable is malformed.
#[track_caller]
pub fn verify_none() {
    if let Err(error) = context::current_options().find() {
        error.raise(std::panic::Location::caller());
    }
}

/// [`verify_none`] for async code: also checks the current tokio runtime's tasks (not counting
/// the calling task), and settles without blocking the runtime.
///
/// # Examples
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let task = tokio::spawn(async {});
/// task.await.unwrap();
/// leakcheck::verify_none_async().await;
/// # }
/// ```
///
/// # Panics
///
/// With the leak report as the message, if threads or tasks survived the settle deadline.
#[cfg(feature = "tokio")]
#[cfg_attr(docsrs, doc(cfg(feature = "tokio")))]
#[track_caller]
pub fn verify_none_async() -> impl std::future::Future<Output = ()> {
    let location = std::panic::Location::caller();
    async move {
        if let Err(error) = context::current_options().find_async().await {
            error.raise(location);
        }
    }
}

/// How many threads the process has now (all of them, not just the test's), or `None` where
/// this platform cannot list a process's threads (leakcheck has no backend for it yet): never a
/// made-up 0.
///
/// Under parallel `cargo test` other tests' threads come and go too; compare counts only where
/// one test runs at a time (e.g. `cargo nextest`), or use [`verify_none`] for per-test verdicts.
///
/// # Examples
///
/// ```
/// if let Some(before) = leakcheck::thread_count() {
///     assert!(before >= 1);
/// }
/// ```
pub fn thread_count() -> Option<usize> {
    probe::sys::thread_count()
}

/// How many tasks the current tokio runtime has alive, or `None` outside a runtime.
///
/// # Examples
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// assert_eq!(leakcheck::task_count(), Some(0));
/// # }
/// ```
#[cfg(feature = "tokio")]
#[cfg_attr(docsrs, doc(cfg(feature = "tokio")))]
pub fn task_count() -> Option<usize> {
    probe::tasks::current_task_count()
}

/// Makes this test binary check, after all its tests ran, that no thread started by any test is
/// still alive: the counterpart of goleak's `VerifyTestMain`. Write it once, at the top level of
/// a test file. The report names, for each survivor, the test that started it, and the process
/// exits with status 101.
///
/// By default only a run whose tests passed is checked; `check_binary!(always)` checks every run.
/// `check_binary!(options)` takes an [`Options`] expression.
///
/// # Examples
///
/// ```
/// leakcheck::check_binary!();
/// # fn main() {}
/// ```
#[macro_export]
macro_rules! check_binary {
    () => {
        $crate::check_binary!(@install $crate::Options::new(), false);
    };
    (always) => {
        $crate::check_binary!(@install $crate::Options::new(), true);
    };
    (@install $options:expr, $always:expr) => {
        const _: () = {
            #[$crate::__private::ctor::ctor(unsafe, crate_path = $crate::__private::ctor)]
            fn __leakcheck_check_binary() {
                $crate::__private::install_binary_check($options, $always);
            }
        };
    };
    ($options:expr) => {
        $crate::check_binary!(@install $options, false);
    };
}
