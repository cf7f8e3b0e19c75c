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
//! So leakcheck does on these events what Linux's interposed `pthread_create` does around the real
//! one: on `CREATE` it registers the new thread's node on the creating thread (its creator and
//! creation backtrace, `registry::register_child`) and hands it to the new thread through
//! [`IN_FLIGHT`] (a lock-free table keyed by the `pthread_t`, `probe::lineage::handoff`, tested on
//! every platform); on `START` the thread takes it and installs it as its own
//! (`registry::enter_child`, which records its id); on `TERMINATE` it is unregistered, found by
//! the thread's id; on `DESTROY` a node never taken (the thread never started) is unregistered.
//! A workqueue thread's node is a root that no test owns (the kernel made the thread, for GCD's
//! pool). Threads that bypass libpthread (raw Mach threads) are not seen.
//!
//! What the hook relies on, where libpthread calls it: `CREATE`, `START` and `TERMINATE` run with
//! no libpthread lock held and on an ordinary thread, so they may lock the registry and allocate,
//! as the Linux interposer does on the same paths; `DESTROY` only reads the table, and frees a
//! node only for a creation that failed (on the creator, after libpthread undid it). The
//! thread's `thread_local!` storage is not touched after its destructors ran (`TERMINATE` finds
//! the node by id, not through the thread's `CURRENT`): touching it there would allocate it anew.
//! From `TERMINATE` on the thread runs no more of the program's code, so its `CURRENT`, which
//! pointed at the node just freed, is never read again (except when the last thread of a process
//! whose `main` called `pthread_exit` runs the exit handlers: Rust programs do not do that).
//! Unlike Linux, `fork` is not interposed: a forked child that creates threads before it execs
//! inherits the registry as it was (and its lock, if another thread held it then).

use std::ffi::{c_uint, c_void};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use crate::probe::lineage::handoff::Handoff;
use crate::probe::lineage::{self, registry, Node};

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
/// Nodes of threads created but not started yet, keyed by `pthread_t`. 1024 creations in
/// flight at once (16 KiB); a creation that finds its window full goes unregistered, and its
/// thread is one that the lineage registry never saw.
static IN_FLIGHT: Handoff<1024> = Handoff::new();

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
        CREATE => created(thread),
        START => started(thread),
        TERMINATE => terminating(),
        DESTROY => destroyed(thread),
        _ => {}
    }
    let previous = PREVIOUS.load(Ordering::Acquire);
    if previous != 0 {
        // SAFETY: the hook that `pthread_introspection_hook_install` returned, with the
        // arguments libpthread gave us.
        unsafe { std::mem::transmute::<usize, Hook>(previous)(event, thread, addr, size) };
    }
}

/// `CREATE`: registers the new thread's node and hands it over.
fn created(thread: libc::pthread_t) {
    // SAFETY: no preconditions.
    let node = if thread == unsafe { libc::pthread_self() } {
        // A workqueue thread, announcing itself: no program thread created it.
        lineage::detached(registry::register_child)
    } else {
        registry::register_child()
    };
    let raw = Arc::into_raw(node);
    if !IN_FLIGHT.put(thread, raw as usize) {
        // SAFETY: not handed over: the reference is still ours.
        let node = unsafe { Arc::from_raw(raw) };
        registry::unregister(&node);
    }
}

/// `START`, on the new thread: installs its node. The registry's reference keeps the node alive
/// until [`terminating`] unregisters it; this one is dropped here.
fn started(thread: libc::pthread_t) {
    if let Some(raw) = IN_FLIGHT.take(thread) {
        // SAFETY: the `Arc::into_raw` that `created` put in the table for this thread, taken once.
        let node = unsafe { Arc::from_raw(raw as *const Node) };
        registry::enter_child(&node);
    }
}

/// `TERMINATE`, on the ending thread: unregisters its node, found by the thread's id.
fn terminating() {
    if let Some(node) = registry::by_tid(super::current_tid()) {
        registry::unregister(&node);
    }
}

/// `DESTROY`: a thread that never started still has its node in the table.
fn destroyed(thread: libc::pthread_t) {
    if let Some(raw) = IN_FLIGHT.take(thread) {
        // SAFETY: as in `started`: the handed-over reference, taken once.
        let node = unsafe { Arc::from_raw(raw as *const Node) };
        registry::unregister(&node);
    }
}
