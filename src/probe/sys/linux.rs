//! Linux: threads and their state from `/proc/self` (`probe::procfs`), stacks by the signal
//! protocol (`probe::stack`), creation hooked by interposing `pthread_create`, `posix_spawn` and
//! `fork` (`probe::lineage`, `probe::children`) where glibc is linked dynamically.

use super::Unseen;
use crate::model::KernelWait;
use crate::probe::procfs;

/// Linux sees everything; what a static or musl build lacks (the interposers, stacks), its
/// reports say per check (the mode note, each thread's missing stack).
pub(crate) const UNSEEN: &[Unseen] = &[];

pub(crate) fn threads() -> Option<Vec<i32>> {
    Some(procfs::process_tids())
}

pub(crate) fn thread_count() -> Option<usize> {
    procfs::thread_count()
}

pub(crate) fn thread_name(tid: i32) -> Option<String> {
    procfs::thread_name(tid)
}

pub(crate) fn kernel_wait(tid: i32) -> KernelWait {
    procfs::kernel_wait(tid)
}

pub(crate) fn current_tid() -> i32 {
    // SAFETY: gettid has no preconditions.
    unsafe { libc::gettid() }
}

pub(crate) fn creation_hook() -> Result<(), &'static str> {
    if cfg!(target_feature = "crt-static") {
        Err(
            "this is a static build (`+crt-static`): `pthread_create` cannot be interposed, as \
             there is no libc definition to forward to",
        )
    } else if !cfg!(target_env = "gnu") {
        Err("`pthread_create` is interposed only on Linux with glibc, not on this target")
    } else {
        Ok(())
    }
}

pub(crate) fn child_pids() -> Option<Vec<i32>> {
    Some(crate::probe::children::proc::child_pids())
}

#[cfg(test)]
pub(crate) fn syscall_number(name: &str) -> Option<i64> {
    match name {
        "futex" => Some(libc::SYS_futex),
        "clock_nanosleep" => Some(libc::SYS_clock_nanosleep),
        _ => None,
    }
}

/// glibc's `on_exit` tells the exit status; musl has only `atexit`.
pub(crate) fn at_exit(handler: fn(Option<i32>)) {
    #[cfg(target_env = "gnu")]
    {
        extern "C" {
            fn on_exit(
                function: extern "C" fn(libc::c_int, *mut libc::c_void),
                arg: *mut libc::c_void,
            ) -> libc::c_int;
        }
        extern "C" fn run(status: libc::c_int, _: *mut libc::c_void) {
            if let Some(handler) = super::AT_EXIT.get() {
                handler(Some(status));
            }
        }
        if super::AT_EXIT.set(handler).is_ok() {
            // SAFETY: registering a plain function with no argument.
            unsafe { on_exit(run, std::ptr::null_mut()) };
        }
    }
    #[cfg(not(target_env = "gnu"))]
    super::at_exit_without_status(handler);
}

/// The interposers need nothing installed: the linker put them in place.
pub(crate) fn before_main() {}

/// `posix_spawn`, `posix_spawnp`, `fork` and `vfork` are interposed where `pthread_create` is.
pub(crate) fn children_hooked() -> bool {
    creation_hook().is_ok()
}
