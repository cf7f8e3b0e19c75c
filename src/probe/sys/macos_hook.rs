//! Thread creation hooked on macOS: libpthread's introspection hook
//! (`pthread_introspection_hook_install`, a public API in `<pthread/introspection.h>`), which
//! libpthread calls at four points of every pthread's life. What each event is, from the header
//! and from libpthread's `src/pthread.c` (apple-oss-distributions/libpthread, libpthread-539):
//!
//! - `CREATE` (on the creating thread, for `pthread_create`): sent by `__pthread_add_thread` after
//!   the new `pthread_t` is allocated and after libpthread's list lock is released, before
//!   `__bsdthread_create` makes the thread; "always sent before START" since macOS 10.14. The
//!   kernel's workqueue threads (GCD's) send it from the new thread itself, just before START.
//! - `START` (always on the new thread): before its start routine runs.
//! - `TERMINATE` (always on the ending thread): at the start of `_pthread_terminate`, after the
//!   cleanup handlers and every thread-specific-data destructor (so after `thread_local!`
//!   destructors), before the thread's kernel port is released.
//! - `DESTROY`: when the `pthread_t` is freed (by the ending thread, its joiner, or the creator
//!   when creation failed); paired with `CREATE`, with or without a START in between.
//!
//! Each event goes to `probe::lineage::events` (what it does there is tested on every platform):
//! `CREATE` registers the new thread's node on the creating thread, as Linux's interposed
//! `pthread_create` does, `START` installs it as the thread's own, `TERMINATE` unregisters it,
//! `DESTROY` unregisters a thread that never started; a workqueue thread's node is a root that no
//! test owns. Threads that bypass libpthread (raw Mach threads) are not seen.
//!
//! What the hook relies on, where libpthread calls it: `CREATE`, `START` and `TERMINATE` run with
//! no libpthread lock held and on an ordinary thread, so they may lock the registry and allocate,
//! as the Linux interposer does on the same paths; `DESTROY` only reads a lock-free table, and
//! frees a node only for a creation that failed (on the creator, after libpthread undid it). The
//! hook's own code does not read its `thread_local!` node after the destructors ran (`TERMINATE`
//! finds the node by the thread's id); std's `Mutex` may still read std's thread-local panic count
//! there (its poison check, while some thread of the process panics), which re-creates that
//! storage for a moment. From `TERMINATE` on the thread runs no more of the program's code, so its
//! `thread_local!` pointer to the node just freed is never read again (except when the last
//! thread of a process whose `main` called `pthread_exit` runs the exit handlers: Rust programs do
//! not do that). `fork` is not interposed here; `pthread_atfork` handlers (`probe::fork`) hold the
//! registries' locks across it and reset the child's registries, as the Linux `fork` does. Events
//! sent between the hook's installation and the store of the hook it replaces (before `main`,
//! where only a sanitizer's threads can run) are not passed on to that hook.

use std::ffi::{c_uint, c_void};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use crate::probe::lineage::events;

/// The events of `<pthread/introspection.h>`.
const CREATE: c_uint = 1;
const START: c_uint = 2;
const TERMINATE: c_uint = 3;
const DESTROY: c_uint = 4;

/// `pthread_introspection_hook_t`.
type Hook = unsafe extern "C" fn(c_uint, libc::pthread_t, *mut c_void, libc::size_t);

extern "C" {
    /// Installs `hook`, returns the one it replaces (null if none): the caller chains to it.
    /// Declared here because the `libc` crate's binding returns a non-nullable function pointer.
    fn pthread_introspection_hook_install(hook: Hook) -> Option<Hook>;
}

/// The hook installed before ours, as an address (0: none).
static PREVIOUS: AtomicUsize = AtomicUsize::new(0);
static INSTALLED: AtomicBool = AtomicBool::new(false);

/// Whether the hook is in place.
pub(super) fn installed() -> bool {
    INSTALLED.load(Ordering::Acquire)
}

/// Installs the hook. Called once, before `main`.
pub(super) fn install() {
    if INSTALLED.swap(true, Ordering::AcqRel) {
        return;
    }
    // SAFETY: `hook` has the signature libpthread calls; it chains to the previous hook.
    let previous = unsafe { pthread_introspection_hook_install(hook) };
    PREVIOUS.store(
        previous.map_or(0, |previous| previous as usize),
        Ordering::Release,
    );
}

/// libpthread's introspection hook: see the module docs. Never unwinds (`extern "C"`).
unsafe extern "C" fn hook(event: c_uint, thread: libc::pthread_t, addr: *mut c_void, size: libc::size_t) {
    match event {
        // SAFETY: no preconditions.
        CREATE => events::created(thread, thread == unsafe { libc::pthread_self() }),
        START => events::started(thread),
        TERMINATE => events::ending(super::current_tid()),
        DESTROY => events::destroyed(thread),
        _ => {}
    }
    let previous = PREVIOUS.load(Ordering::Acquire);
    if previous != 0 {
        // SAFETY: the hook that `pthread_introspection_hook_install` returned, with the
        // arguments libpthread gave us.
        unsafe { std::mem::transmute::<usize, Hook>(previous)(event, thread, addr, size) };
    }
}
