//! What must be ready before `main`: the real `pthread_create` and the thread-exit key, the real
//! process-creating functions, and the threads the process
//! started with (the process-diff fallback's baseline for checks without an entry snapshot).

use std::collections::HashSet;
use std::sync::OnceLock;

static STARTUP_TIDS: OnceLock<HashSet<i32>> = OnceLock::new();

#[ctor::ctor(unsafe)]
fn init() {
    #[cfg(all(target_os = "linux", target_env = "gnu", not(target_feature = "crt-static")))]
    {
        let _ = super::lineage::interpose::real();
        let _ = super::lineage::interpose::exit_key();
        super::children::interpose::resolve_all();
    }
    let _ = STARTUP_TIDS.set(super::procfs::process_tids().into_iter().collect());
}

/// The threads alive when the process started.
pub(crate) fn startup_tids() -> &'static HashSet<i32> {
    STARTUP_TIDS.get_or_init(HashSet::new)
}
