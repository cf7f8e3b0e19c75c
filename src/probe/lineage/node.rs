//! One thread of the process as the lineage registry knows it.

use std::any::Any;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

/// Deepest creation backtrace recorded, in frames (threads, child processes, tasks).
pub(crate) const CREATION_FRAMES: usize = 48;

/// One thread of the process, alive or the ancestor of a live one.
pub(crate) struct Node {
    /// Process-unique; kernel thread ids are reused, these never are.
    pub(crate) uid: u64,
    /// The thread that created this one; `None` for a root (main thread, foreign thread).
    pub(crate) parent: Option<Arc<Node>>,
    /// Kernel thread id, 0 until the thread has started.
    pub(crate) tid: AtomicI32,
    /// The thread's full name as std knows it, recorded when it is first needed.
    pub(crate) name: OnceLock<Box<str>>,
    /// Raw instruction pointers of the creation backtrace, innermost first (the first
    /// `created_len`): inline, so that a creation allocates one block, not two.
    pub(crate) created_at: [usize; CREATION_FRAMES],
    pub(crate) created_len: usize,
    /// The start routine and argument the creator passed, read once by the new thread (the
    /// trampoline's argument is the node itself, so a creation allocates nothing else).
    pub(crate) start: [AtomicUsize; 2],
    /// Set once the thread has ended (start routine and thread-local destructors done).
    pub(crate) exited: AtomicBool,
    /// The creation backtrace as leakcheck resolved it, once needed (it never changes, so rules
    /// and reports that read it resolve it once per thread). Opaque here: its type belongs to
    /// leakcheck's model.
    pub(crate) resolved: OnceLock<Box<dyn Any + Send + Sync>>,
    /// Whether it was created inside a one-time initializer, decided once by leakcheck's
    /// singleton probe (0 undecided, 1 no, 2 yes).
    pub(crate) singleton: AtomicU8,
    /// How many registered threads descend from this one (changed under the registry lock).
    pub(crate) live_below: AtomicUsize,
    /// How many recorded child processes this thread or its descendants started (kept by
    /// leakcheck's child-process probe, under its registry lock).
    pub(crate) children_below: AtomicUsize,
    /// Index in the registry's live list while registered.
    pub(crate) slot: AtomicUsize,
}

impl Node {
    /// The raw return addresses of the creation backtrace, innermost first (empty for a root).
    pub(crate) fn created_at(&self) -> &[usize] {
        &self.created_at[..self.created_len]
    }

    /// Whether any registered thread descends from this one (one load; no lock).
    pub(crate) fn has_live_descendants(&self) -> bool {
        self.live_below.load(Ordering::Acquire) != 0
    }

    /// Whether this thread owns nothing alive: no registered descendant thread and no recorded
    /// child process. Two loads, no lock: a test's usual clean pass.
    pub(crate) fn owns_nothing(&self) -> bool {
        !self.has_live_descendants() && self.children_below.load(Ordering::Acquire) == 0
    }

    /// Whether this node descends from the node `uid`.
    pub(crate) fn descends_from(&self, uid: u64) -> bool {
        let mut node = self.parent.as_deref();
        while let Some(ancestor) = node {
            if ancestor.uid == uid {
                return true;
            }
            node = ancestor.parent.as_deref();
        }
        false
    }

    /// The kernel thread id, or `None` while the thread has not started yet.
    pub(crate) fn tid(&self) -> Option<i32> {
        match self.tid.load(Ordering::Acquire) {
            0 => None,
            tid => Some(tid),
        }
    }

    /// The thread's name if it was recorded (threads that created others, test threads).
    pub(crate) fn name(&self) -> Option<&str> {
        self.name.get().map(|name| &**name)
    }

    /// The chain of creators, nearest first.
    pub(crate) fn ancestors(&self) -> impl Iterator<Item = &Node> {
        std::iter::successors(self.parent.as_deref(), |node| node.parent.as_deref())
    }

    /// The outermost ancestor that is not a root: for a thread started inside a test, the libtest
    /// thread that ran the test (whose name is the test's name).
    pub(crate) fn test_thread(&self) -> Option<&Node> {
        std::iter::once(self)
            .chain(self.ancestors())
            .take_while(|node| node.parent.is_some())
            .last()
    }
}
