//! Thread lineage: for every thread of the process, the thread that created it.
//!
//! # Design
//!
//! A test's verdict must cover exactly the threads that the test's thread started, directly or
//! through threads it started, even when libtest runs many tests at once in one process. So every
//! thread gets a [`Node`] when it is created: a process-unique id, its creator's node (an `Arc`
//! chain, so a dead creator's identity survives as long as its descendants), the raw instruction
//! pointers of the creation backtrace (symbols are resolved only when a report is printed) and,
//! once the thread runs, its kernel thread id.
//!
//! Nodes are created by an interposed `pthread_create` (see [`interpose`]; Windows and macOS hook
//! creation their own way, in `probe/sys/`, to the same effect): it runs on the creating thread,
//! registers the new node *before* the thread exists (so a check right after a spawn sees it) and
//! starts the thread through a trampoline that installs the node as the thread's own. The node is
//! unregistered when the thread is truly gone: by the destructor of a pthread key, which
//! glibc runs after the start routine returned or `pthread_exit` unwound it, and after the thread's
//! `thread_local!` destructors (a thread stuck in one of those is still alive, and reported).
//!
//! Every node counts its live descendants (`live_below`, kept by creation and exit for each
//! ancestor), and the registry is a plain list of the live nodes. A clean-pass check reads one
//! counter of the calling thread's node: zero means nothing to find, with no lock and no lookup, so
//! it costs nothing however many threads the process holds (scanning `/proc/self/task` costs
//! ~430 µs with 1000 threads). Only a check that has something to find walks the list. The hot
//! paths (creation, exit, the clean look) avoid hash maps on purpose: `cargo test` builds them
//! without optimisation, where a SipHash insert costs thousands of instructions.
//!
//! Threads that were not created through `pthread_create` after the process loaded (the main
//! thread, threads of a build where interposition does not take effect) get a root node lazily, the
//! first time they ask for one: they can be ancestors, never survivors. Threads started without
//! the public `pthread_create` at all (a raw `clone`, glibc's `timer_create(SIGEV_THREAD)`
//! threads) never get a node; `check::untracked` finds them where attribution is exact.
//!
//! Limits, stated in the README too: tokio's blocking pool reuses threads, so a pool thread belongs
//! to the test whose thread (or runtime) created it, not to the test whose closure it runs. A pool
//! or runtime created lazily in a `static` descends from the first test that touched it; the
//! check layer does not charge it to that test (leakcheck's singleton probe tells such threads
//! apart).

// Lineage from creation events: macOS's introspection hook (tested on every platform).
#[cfg(any(target_os = "macos", test))]
pub(crate) mod events;
#[cfg(any(target_os = "macos", test))]
mod handoff;
#[cfg(all(target_os = "linux", target_env = "gnu", not(target_feature = "crt-static")))]
mod interpose;
mod node;
pub(crate) mod registry;

use std::sync::OnceLock;

pub(crate) use node::{Node, CREATION_FRAMES};
pub(crate) use registry::{
    all_live, all_registered, by_tid, current, current_named, exit_count, gettid, interposer_seen,
    live_descendants, prepare, set_detach_next, wait_for_exit,
};
#[cfg(any(
    all(target_os = "linux", target_env = "gnu", not(target_feature = "crt-static")),
    target_os = "macos"
))]
pub(crate) use registry::{hold_for_fork, ForkHold};

/// Runs `spawn` so that the thread it creates belongs to no test: for leakcheck's own helpers.
pub(crate) fn detached<T>(spawn: impl FnOnce() -> T) -> T {
    set_detach_next(true);
    let result = spawn();
    set_detach_next(false);
    result
}

/// Whether thread creation goes through the interposer in this process. The answer is definitive:
/// if no creation was seen yet, a probe thread is started and joined once.
pub(crate) fn interposer_active() -> bool {
    static ACTIVE: OnceLock<bool> = OnceLock::new();
    if interposer_seen() {
        return true;
    }
    *ACTIVE.get_or_init(|| {
        let probe = detached(|| {
            std::thread::Builder::new()
                .name("leakcheck-probe".into())
                .spawn(|| ())
        });
        if let Ok(probe) = probe {
            let _ = probe.join();
        }
        interposer_seen()
    })
}
