//! Thread lineage from creation events, where the platform tells of a thread's creation, start and
//! end instead of leakcheck wrapping the call that creates it (macOS's libpthread introspection
//! hook, `probe/sys/macos_hook.rs`, which says when and where each event runs). What each event
//! does is kept here, so that it is tested on every platform:
//!
//! - [`created`], on the creating thread, before the new thread exists: registers its node (its
//!   creator, its creation backtrace), as Linux's interposed `pthread_create` does, and hands it
//!   to the new thread through [`IN_FLIGHT`], keyed by the new thread's handle (its `pthread_t`);
//! - [`started`], on the new thread: takes its node and installs it as the thread's own, which
//!   records the thread's id; the registry's reference keeps the node alive from then on;
//! - [`ending`], on the ending thread, after its thread-local destructors: unregisters the node,
//!   found by the thread's id (not through the thread's own `thread_local!` slot, which may be
//!   gone by then);
//! - [`destroyed`]: a node never taken (the thread never started) is unregistered.

use std::sync::Arc;

use super::handoff::Handoff;
use super::{registry, Node};

/// Nodes of threads created but not started yet, keyed by handle: 1024 creations in flight at
/// once (16 KiB). A creation that finds its window full goes unregistered, and its thread is one
/// the registry never saw.
static IN_FLIGHT: Handoff<1024> = Handoff::new();

/// The calling thread created the thread `handle` (or, with `announced`, the thread announces
/// its own creation: no thread of the program created it, as with the kernel's workqueue threads,
/// so its node is a root that no test owns).
pub(crate) fn created(handle: usize, announced: bool) {
    let node = match announced {
        true => super::detached(registry::register_child),
        false => registry::register_child(),
    };
    let raw = Arc::into_raw(node);
    if !IN_FLIGHT.put(handle, raw as usize) {
        // SAFETY: not handed over: the reference is still ours.
        let node = unsafe { Arc::from_raw(raw) };
        registry::unregister(&node);
    }
}

/// The calling thread, `handle`, starts: installs its node, if its creation was seen.
pub(crate) fn started(handle: usize) {
    if let Some(raw) = IN_FLIGHT.take(handle) {
        // SAFETY: the `Arc::into_raw` that `created` put in the table for this handle, taken once.
        let node = unsafe { Arc::from_raw(raw as *const Node) };
        registry::enter_child(&node);
    }
}

/// The calling thread, whose id is `tid`, is ending: its node is unregistered.
pub(crate) fn ending(tid: i32) {
    if let Some(node) = registry::by_tid(tid) {
        registry::unregister(&node);
    }
}

/// The thread `handle` is destroyed: if it never started, its node is still in the table.
pub(crate) fn destroyed(handle: usize) {
    if let Some(raw) = IN_FLIGHT.take(handle) {
        // SAFETY: as in `started`: the handed-over reference, taken once.
        let node = unsafe { Arc::from_raw(raw as *const Node) };
        registry::unregister(&node);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe::lineage::{current, gettid, live_descendants};
    use std::sync::atomic::Ordering;

    /// The nodes of threads the calling thread created that have not started.
    fn pending(creator: &Node) -> Vec<Arc<Node>> {
        live_descendants(creator)
            .into_iter()
            .filter(|node| node.tid().is_none())
            .collect()
    }

    /// Creation on one thread and start on another attribute the new thread to its creator: its
    /// node is the creator's child from the creation on, the thread's own once it starts (with
    /// its id), and gone once it ends.
    #[test]
    fn create_start_end() {
        let creator = current();
        created(0x7e57_0001_0000, false);
        let [node] = <[_; 1]>::try_from(pending(&creator))
            .ok()
            .expect("one pending node");
        assert_eq!(node.parent.as_ref().map(|parent| parent.uid), Some(creator.uid));
        let uid = node.uid;
        std::thread::scope(|scope| {
            scope.spawn(|| {
                started(0x7e57_0001_0000);
                let own = current();
                assert_eq!(own.uid, uid);
                assert_eq!(own.tid(), Some(gettid()));
                // Under test on Linux the interposer registered this thread too, with the same
                // id: ours gets an id of its own, so that `ending` finds it.
                own.tid.store(-0x7e57, Ordering::Release);
                ending(-0x7e57);
                assert!(own.exited.load(Ordering::Acquire));
                registry::leave_child(&own);
            });
        });
        assert!(!live_descendants(&creator).iter().any(|node| node.uid == uid));
    }

    /// A thread that announces its own creation (a workqueue thread) belongs to no test.
    #[test]
    fn announced_threads_are_roots() {
        let creator = current();
        created(0x7e57_0002_0000, true);
        assert!(pending(&creator).is_empty());
        std::thread::scope(|scope| {
            scope.spawn(|| {
                started(0x7e57_0002_0000);
                let own = current();
                assert!(own.parent.is_none());
                assert!(!own.exited.load(Ordering::Acquire));
                own.tid.store(-0x7e58, Ordering::Release);
                ending(-0x7e58);
                assert!(own.exited.load(Ordering::Acquire));
                registry::leave_child(&own);
            });
        });
    }

    /// A thread destroyed before it started (its creation failed) is unregistered, and a late
    /// start finds nothing to take.
    #[test]
    fn destroyed_before_start() {
        let creator = current();
        created(0x7e57_0003_0000, false);
        let [node] = <[_; 1]>::try_from(pending(&creator))
            .ok()
            .expect("one pending node");
        destroyed(0x7e57_0003_0000);
        assert!(node.exited.load(Ordering::Acquire));
        assert!(pending(&creator).is_empty());
        started(0x7e57_0003_0000);
        assert_ne!(current().uid, node.uid);
    }
}
