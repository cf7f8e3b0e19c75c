//! Thread lineage: for every thread of the process, the thread that created it.
//!
//! The registry, its nodes and the interposed `pthread_create` run for every thread the process
//! creates, so they live on the hot path (`src/hot/lineage.rs`, `src/hot/interpose.rs`,
//! `src/hot/node.rs`, whose docs give the design), compiled optimised whatever the profile (see
//! `src/hot/lib.rs`). This module is leakcheck's door to them: the functions of the hot path's
//! list (`src/hot/api.rs`) that concern threads; and what needs more than the hot path has (std
//! threads, `libc`).

use std::sync::OnceLock;

pub(crate) use crate::hot::api::call::{
    all_live, all_registered, by_tid, current, current_named, exit_count, fast_trace, interposer_seen,
    live_descendants, prepare, run_usual, set_detach_next, wait_for_exit,
};
pub(crate) use crate::hot::node::{Node, CREATION_FRAMES};

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

#[cfg(target_os = "linux")]
pub(crate) fn gettid() -> i32 {
    // SAFETY: gettid has no preconditions.
    unsafe { libc::gettid() }
}

#[cfg(not(target_os = "linux"))]
pub(crate) fn gettid() -> i32 {
    0
}
