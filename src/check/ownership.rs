//! Which live descendants of a check's root are the test's own.
//!
//! Lineage says who created a thread; ownership adds what a wrong blame needs: a thread is not
//! the test's if it is a process-wide singleton ([`singleton`]: created inside a one-time
//! initializer, e.g. rayon's global pool), or if between it and the test's thread stands a
//! singleton or a thread of the check's baseline. Such a thread was started by a shared pool
//! doing work for whichever test submitted it, which lineage cannot tell: a wrong blame is worse
//! than a miss, so it is charged to nobody (the whole-binary check still reports it at exit,
//! naming the pool thread that created it).
//!
//! Only threads a check finds alive are asked, and each node's singleton decision is cached, so
//! a clean pass costs nothing here.

use crate::probe::lineage::Node;
use crate::probe::singleton;

/// Why a live descendant is not the test's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum NotOwned {
    /// Created inside a one-time initializer.
    Singleton,
    /// Created (directly or not) by a singleton or a baseline thread.
    Pool,
}

impl NotOwned {
    /// How a verbose report says why it was not counted.
    pub(crate) fn describe(self) -> &'static str {
        match self {
            NotOwned::Singleton => {
                "a process-wide singleton: created inside a one-time initializer (`Once`, \
                 `OnceLock`, `LazyLock`, `lazy_static`, `once_cell`), it lives as long as the process"
            }
            NotOwned::Pool => {
                "created by a thread of a shared pool (a singleton or a thread alive before the \
                 check), which may have been working for another test"
            }
        }
    }
}

/// Whether the check rooted at `root` owns its live descendant `node`; `in_baseline` says
/// whether a node was alive when the check began.
pub(crate) fn not_owned(node: &Node, root: u64, in_baseline: impl Fn(u64) -> bool) -> Option<NotOwned> {
    if singleton::is_singleton(node) {
        return Some(NotOwned::Singleton);
    }
    for ancestor in node.ancestors() {
        if ancestor.uid == root {
            return None;
        }
        if in_baseline(ancestor.uid) || singleton::is_singleton(ancestor) {
            return Some(NotOwned::Pool);
        }
    }
    None
}

/// Whether any thread between `node` and the test's thread is a singleton: its work may have
/// been another test's (for the whole-binary check, which then names no test).
pub(crate) fn under_singleton(node: &Node) -> bool {
    node.ancestors()
        .take_while(|ancestor| ancestor.parent.is_some())
        .any(singleton::is_singleton)
}
