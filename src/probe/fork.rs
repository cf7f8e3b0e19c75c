//! Fork safety. The child of a `fork` has only the thread that called it, and a lock that another
//! thread held at that instant stays held forever there: a child that then creates a thread, or
//! starts a process, would hang on leakcheck's registry. So the interposed `fork` takes every lock
//! that leakcheck's code may take in a child before the real `fork`, and releases them in both
//! processes; in the child it first resets the registries to what exists there (only the calling
//! thread, no children), as glibc does for its allocator.
//!
//! The unwinder's locks (its module list, its shared CFI context) need no holding: they are only
//! ever tried, and a busy one is worked around, so one held forever in a child costs time only.
//!
//! Every lock held here is a leaf (nothing else of leakcheck's is locked while it is held), so
//! taking them in any order cannot deadlock with another thread. Locks that are not leaves (the
//! stack-capture protocol's, the symbol caches') are not held: a child that captures stacks or
//! renders a report may wait on one of those (see the guide's limits).

use super::{children, lineage};

/// The locks held across a `fork`.
pub(crate) struct Held {
    lineage: lineage::ForkHold,
    children: children::ForkHold,
}

/// Takes the locks, on the thread about to fork.
pub(crate) fn hold() -> Held {
    Held {
        lineage: lineage::hold_for_fork(),
        children: children::hold_for_fork(),
    }
}

impl Held {
    /// In the child: the registries reset to the calling thread alone, then the locks released.
    pub(crate) fn in_child(self) {
        self.children.in_child();
        self.lineage.in_child();
    }
}

/// macOS: the same holding around every `fork`, through `pthread_atfork`, as nothing is interposed
/// there: the prepare handler takes the locks on the forking thread, the parent's handler releases
/// them, the child's resets the registries first. Between the handlers the held locks wait in
/// `HELD`, touched only by the thread that holds them (a second fork's prepare handler waits on
/// the locks themselves). Compiled, never run: it mirrors the interposed `fork` tested on Linux.
#[cfg(target_os = "macos")]
pub(crate) fn install_atfork() {
    struct Slot(std::cell::UnsafeCell<Option<Held>>);
    // SAFETY: only the thread that holds the registries' locks reads or writes the slot.
    unsafe impl Sync for Slot {}
    static HELD: Slot = Slot(std::cell::UnsafeCell::new(None));

    unsafe extern "C" fn prepare() {
        let held = hold();
        // SAFETY: this thread now holds the locks, and with them the slot.
        unsafe { *HELD.0.get() = Some(held) };
    }
    unsafe extern "C" fn parent() {
        // SAFETY: set by this thread's prepare handler; the locks are released by the drop.
        drop(unsafe { (*HELD.0.get()).take() });
    }
    unsafe extern "C" fn child() {
        // SAFETY: as in `parent`, in the child, whose one thread is the one that forked.
        if let Some(held) = unsafe { (*HELD.0.get()).take() } {
            held.in_child();
        }
    }
    // SAFETY: three handlers with the signature `pthread_atfork` calls, registered once.
    unsafe { libc::pthread_atfork(Some(prepare), Some(parent), Some(child)) };
}
