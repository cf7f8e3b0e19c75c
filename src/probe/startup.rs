//! What must be ready before `main`: the real `pthread_create` and the thread-exit key, the real
//! process-creating functions, and the threads the process
//! started with (the process-diff fallback's baseline for checks without an entry snapshot).

use std::collections::HashSet;
use std::sync::OnceLock;

/// The process's threads at start-up.
enum Startup {
    /// Listed from `/proc/self/task`.
    Listed(HashSet<i32>),
    /// Every thread but the main one was registered: those with a uid up to this one.
    Registered { last_uid: u64 },
}

static STARTUP: OnceLock<Startup> = OnceLock::new();

#[ctor::ctor(unsafe)]
fn init() {
    #[cfg(all(target_os = "linux", target_env = "gnu", not(target_feature = "crt-static")))]
    {
        let _ = super::lineage::interpose::real();
        let _ = super::lineage::interpose::exit_key();
        super::children::interpose::resolve_all();
    }
    let _ = STARTUP.set(startup_threads());
}

/// The threads alive now. Where all of them but this one are registered, the registry already
/// knows them: listing `/proc/self/task` costs per thread (a process whose constructors started
/// 1000 threads paid milliseconds at every start), the kernel's thread count is one small read.
/// The count is taken between two reads of the registry that must agree, so a thread starting or
/// ending meanwhile makes it list (a registered thread unregisters before it leaves the kernel,
/// and one that is starting counts only once its id is known).
fn startup_threads() -> Startup {
    let before = super::lineage::started_count();
    if before.is_some() {
        let last_uid = super::lineage::last_uid();
        let kernel = super::procfs::thread_count();
        if before == super::lineage::started_count() && kernel == before.map(|count| count + 1) {
            return Startup::Registered { last_uid };
        }
    }
    Startup::Listed(super::procfs::process_tids().into_iter().collect())
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
