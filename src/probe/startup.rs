//! What must be ready before `main`: the real `pthread_create` and the thread-exit key, the real
//! process-creating functions, and the threads the process
//! started with (the process-diff fallback's baseline for checks without an entry snapshot).

use std::collections::HashSet;
use std::sync::OnceLock;

/// The process's threads at start-up.
enum Startup {
    /// Listed by the platform (`/proc/self/task` on Linux).
    Listed(HashSet<i32>),
    /// Every thread but the main one was registered: those with a uid up to this one.
    Registered { last_uid: u64 },
}

static STARTUP: OnceLock<Startup> = OnceLock::new();

#[ctor::ctor(unsafe)]
fn init() {
    super::sys::before_main();
    let keyed = super::lineage::prepare();
    #[cfg(all(target_os = "linux", target_env = "gnu", not(target_feature = "crt-static")))]
    super::children::interpose::resolve_all();
    let _ = STARTUP.set(startup_threads(keyed));
}

/// The threads alive now. Where all of them but this one are registered, the registry already
/// knows them: listing `/proc/self/task` costs per thread (a process whose constructors started
/// 1000 threads paid milliseconds at every start), the kernel's thread count is one small read.
/// Only with the exit key (`keyed`): without it a thread that calls `pthread_exit` stays
/// registered after it has gone, and could stand in for an unregistered one in the count.
fn startup_threads(keyed: bool) -> Startup {
    if keyed {
        if let Some(last_uid) = super::lineage::all_registered(&mut super::sys::thread_count) {
            return Startup::Registered { last_uid };
        }
    }
    Startup::Listed(super::sys::threads().unwrap_or_default().into_iter().collect())
}

/// The threads alive when the process started (those still alive, where they were all
/// registered).
pub(crate) fn startup_tids() -> HashSet<i32> {
    match STARTUP.get() {
        Some(Startup::Listed(tids)) => tids.clone(),
        Some(Startup::Registered { last_uid }) => {
            let mut tids: HashSet<i32> = super::lineage::all_live()
                .iter()
                .filter(|node| node.uid <= *last_uid)
                .filter_map(|node| node.tid())
                .collect();
            // SAFETY: getpid has no preconditions.
            tids.insert(unsafe { libc::getpid() });
            tids
        }
        None => HashSet::new(),
    }
}
