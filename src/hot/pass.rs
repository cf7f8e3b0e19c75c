//! A test's usual clean pass, in one call: the attribute's entry look, the body under
//! `catch_unwind` with the test's context installed, and the look after it. In the debug builds
//! `cargo test` makes, each of these steps in leakcheck's own code was a dozen unoptimised calls
//! (`Arc` clones, thread-local accesses, `catch_unwind`'s layers), and a test's code, cold after
//! the kernel's work between tests, cost more to fetch than to run.

use std::cell::Cell;
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use super::lineage;
use super::node::Node;

thread_local! {
    /// The running `#[leak_test]`'s context on this thread (leakcheck's `context::Context`, opaque
    /// here), null outside one. Here so that [`run_usual`] can install it.
    static CONTEXT: Cell<*const ()> = const { Cell::new(std::ptr::null()) };
}

/// Installs `context` as the calling thread's; returns the one it replaces.
pub(crate) fn swap_context(context: *const ()) -> *const () {
    CONTEXT.replace(context)
}

/// The calling thread's context (null outside a `#[leak_test]`).
pub(crate) fn context() -> *const () {
    CONTEXT.get()
}

/// Whether `root`'s thread owns nothing alive: no registered descendant thread and no recorded
/// child process. Two loads.
fn owns_nothing(root: &Node) -> bool {
    !root.has_live_descendants() && root.children_below.load(Ordering::Acquire) == 0
}

/// Runs `body` as a test's usual clean pass: the calling thread owns no thread and no child
/// process at entry, so its scopes would be empty. Returns `None`, without running the body,
/// when it does own something (the caller then enters its scopes and runs the body itself).
/// Otherwise runs the body with `context` installed, and returns its outcome; `found` gets the
/// thread's node when after the body the thread owns something (the caller then settles).
pub(crate) fn run_usual(
    context: *const (),
    body: &mut dyn FnMut(),
    found: &mut Option<Arc<Node>>,
) -> Option<std::thread::Result<()>> {
    let root = lineage::current();
    if !owns_nothing(&root) {
        return None;
    }
    /// Puts the previous context back when dropped: after the body, and also when a forced
    /// unwind (`pthread_exit` in the body) passes through, which `catch_unwind` does not stop.
    struct Restore(*const ());
    impl Drop for Restore {
        fn drop(&mut self) {
            CONTEXT.set(self.0);
        }
    }
    let restore = Restore(CONTEXT.replace(context));
    let outcome = panic::catch_unwind(AssertUnwindSafe(body));
    drop(restore);
    if !owns_nothing(&root) {
        *found = Some(root);
    }
    Some(outcome)
}

/// Whether the calling thread is libtest's thread for the test function `test` (named after it,
/// with or without its module path) and that function already ran on such a thread in this
/// process (`ran`, one flag per function). See leakcheck's `attribute::once`.
pub(crate) fn ran_before(ran: &AtomicBool, test: &str) -> bool {
    let thread = std::thread::current();
    let Some(name) = thread.name() else {
        return false;
    };
    let own = name == test
        || name
            .strip_suffix(test)
            .is_some_and(|module| module.ends_with("::"));
    own && ran.swap(true, Ordering::Relaxed)
}
