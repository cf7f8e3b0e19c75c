//! Threads no creation went through: alive in `/proc/self/task`, unknown to the lineage registry.
//!
//! The interposed `pthread_create` sees every thread the program creates through libc's public
//! entry point. It does not see a raw `clone`, nor the helpers libc starts internally (glibc's
//! `timer_create(SIGEV_THREAD)` starts a helper thread and one thread per expiry through its own
//! internal `pthread_create`). Such a thread belongs to no test in the registry, so it can only be
//! blamed where attribution is exact without lineage:
//!
//! - one test per process (`cargo nextest run`'s default, detected from `NEXTEST` and
//!   `NEXTEST_EXECUTION_MODE`): every such thread not alive at start-up is the test's;
//! - at process exit (`check_binary!`): every such thread is some test's.
//!
//! Under parallel `cargo test` per-test checks do not look for them (they could be any test's).
//!
//! Never counted: the main thread, threads alive at start-up, leakcheck's own threads
//! (`leakcheck-*`), the kernel's io_uring workers (`iou-*`), and glibc's permanent timer helper
//! (blocked in `rt_sigtimedwait` for glibc's internal timer signal): it stays for the life of the
//! process after the first `SIGEV_THREAD` timer, deleted or not, so it is nobody's leak.

use std::collections::HashSet;

use crate::model::Hint;
use crate::probe::procfs::{self, SyscallState};
use crate::probe::{lineage, startup, sys};

/// glibc's internal timer signal (`SIGTIMER`, the first kernel real-time signal, 32).
const GLIBC_SIGTIMER: u32 = 32;

/// Whether this process runs exactly one test (nextest's process-per-test mode).
pub(crate) fn one_test_per_process() -> bool {
    static ONE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ONE.get_or_init(|| match std::env::var("NEXTEST_EXECUTION_MODE") {
        Ok(mode) => mode == "process-per-test",
        // nextest versions before the variable ran one process per test only.
        Err(_) => std::env::var_os("NEXTEST").is_some_and(|value| value == "1"),
    })
}

/// The threads of the process that the lineage registry never saw created (see the module docs
/// for those never counted). Empty where the interposer is not in effect.
pub(crate) fn untracked_tids() -> Vec<i32> {
    if !lineage::interposer_active() {
        return Vec::new();
    }
    let own = lineage::gettid();
    // SAFETY: getpid has no preconditions.
    let main = unsafe { libc::getpid() };
    let startup = startup::startup_tids();
    let tids = sys::threads().unwrap_or_default();
    let known: HashSet<i32> = lineage::all_live().iter().filter_map(|node| node.tid()).collect();
    tids.into_iter()
        .filter(|&tid| tid != own && tid != main && !startup.contains(&tid))
        .filter(|tid| !known.contains(tid))
        .filter(|&tid| {
            !sys::thread_name(tid)
                .is_some_and(|name| name.starts_with("leakcheck-") || name.starts_with("iou-"))
        })
        .filter(|&tid| !is_glibc_timer_helper(tid))
        // Registered meanwhile (created through the interposer, started after the first look).
        .filter(|&tid| lineage::by_tid(tid).is_none())
        .collect()
}

/// glibc's permanent `SIGEV_THREAD` helper: waits in `rt_sigtimedwait` for `SIGTIMER`.
fn is_glibc_timer_helper(tid: i32) -> bool {
    let Some(state) = procfs::syscall_state(tid) else {
        return false;
    };
    matches!(state, SyscallState::InCall { .. })
        && procfs::sigtimedwait_set(state)
            .flatten()
            .is_some_and(|set| set & (1 << (GLIBC_SIGTIMER - 1)) != 0)
}

/// The hint every untracked survivor carries.
pub(crate) fn hint() -> Hint {
    Hint {
        cause: "created outside `pthread_create`: a raw `clone`, or a libc-internal helper such as \
                a `timer_create(SIGEV_THREAD)` callback thread"
            .into(),
        fix: "make sure what started it ends it before the test returns (delete the timer and let \
              its callback return; join a cloned thread)"
            .into(),
        evidence: "the thread is alive but leakcheck's `pthread_create` never saw it created, so \
                   its creator and creation site are unknown"
            .into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Not a check: times one look for untracked threads (what each settle look costs under
    /// nextest's process-per-test mode) with 100 other threads alive.
    // cargo test [--release] --lib measure_untracked_look -- --ignored --nocapture
    #[test]
    #[ignore]
    fn measure_untracked_look() {
        let (keep, wait) = std::sync::mpsc::channel::<()>();
        let wait = std::sync::Arc::new(std::sync::Mutex::new(wait));
        let threads: Vec<_> = (0..100)
            .map(|_| {
                let wait = wait.clone();
                std::thread::spawn(move || drop(wait.lock().map(|rx| rx.recv())))
            })
            .collect();
        std::thread::sleep(std::time::Duration::from_millis(200));
        let rounds = 100;
        let start = std::time::Instant::now();
        let found: usize = (0..rounds).map(|_| untracked_tids().len()).sum();
        let took = start.elapsed() / rounds;
        eprintln!("untracked look with 100 other threads: {took:?} ({found} found)");
        drop(keep);
        for thread in threads {
            thread.join().unwrap();
        }
    }
}
