//! The registry of live threads' nodes: creation, exit, lookups, the wait for an exit.
//! See the parent module for the design.

use std::cell::{Cell, RefCell};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use super::node::{Node, CREATION_FRAMES};

/// A static on cache lines of its own. The statics that every creation and exit writes (the uid
/// counter, the registry, the exit count) sit next to read-mostly ones in the binary's data:
/// sharing a line, each write on the creating thread would evict what the new thread reads next
/// on another CPU (two lines: the adjacent-line prefetcher pairs them).
#[repr(align(128))]
struct Line<T>(T);

impl<T> std::ops::Deref for Line<T> {
    type Target = T;

    #[inline(always)]
    fn deref(&self) -> &T {
        &self.0
    }
}

/// The next node's uid.
static NEXT_UID: Line<AtomicU64> = Line(AtomicU64::new(1));

/// The uid of the newest node so far (0 if none).
fn last_uid() -> u64 {
    NEXT_UID.load(Ordering::Relaxed) - 1
}

fn new_node(parent: Option<Arc<Node>>, created_at: [usize; CREATION_FRAMES], created_len: usize) -> Node {
    Node {
        uid: NEXT_UID.fetch_add(1, Ordering::Relaxed),
        parent,
        tid: std::sync::atomic::AtomicI32::new(0),
        name: std::sync::OnceLock::new(),
        created_at,
        created_len,
        start: [AtomicUsize::new(0), AtomicUsize::new(0)],
        exited: AtomicBool::new(false),
        resolved: std::sync::OnceLock::new(),
        singleton: std::sync::atomic::AtomicU8::new(0),
        live_below: AtomicUsize::new(0),
        children_below: AtomicUsize::new(0),
        slot: AtomicUsize::new(usize::MAX),
    }
}

/// The live nodes, in no order; each knows its index (`Node::slot`), so removal is a swap.
struct Registry {
    live: Vec<Arc<Node>>,
}

static REGISTRY: Line<Mutex<Registry>> = Line(Mutex::new(Registry { live: Vec::new() }));

fn registry() -> MutexGuard<'static, Registry> {
    // Nothing panics while holding the lock; a poisoned lock still holds consistent data.
    REGISTRY.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

thread_local! {
    /// The calling thread's node, borrowed from its owner: the exit key's value for a thread the
    /// interposer started, [`ROOT`] for any other. Null until known. A plain pointer, so that the
    /// thread registers no TLS destructor for it (one per thread the process creates), and the
    /// node stays the thread's own through its TLS destructors, until the exit key releases it.
    static CURRENT: Cell<*const Node> = const { Cell::new(std::ptr::null()) };
    /// Owns the node of a thread the interposer did not start (created on first ask).
    static ROOT: RefCell<Option<OwnedRoot>> = const { RefCell::new(None) };
    /// Set while leakcheck starts one of its own helper threads: the next thread created on this
    /// thread becomes a root that no test owns.
    static DETACH_NEXT: Cell<bool> = const { Cell::new(false) };
}

/// A root node owned by its thread; clears [`CURRENT`] when the thread's TLS is destroyed.
struct OwnedRoot(Arc<Node>);

impl Drop for OwnedRoot {
    fn drop(&mut self) {
        leave_child(&self.0);
    }
}

/// Set the first time the interposer sees a thread being created.
static INTERPOSER_SEEN: AtomicBool = AtomicBool::new(false);

/// The calling thread's node, created as a root if the thread was not seen being created.
pub(crate) fn current() -> Arc<Node> {
    let own = CURRENT.get();
    if !own.is_null() {
        // SAFETY: `CURRENT` points to a node that its owner (the exit key's value or `ROOT`)
        // keeps alive until it clears `CURRENT`; this adds a reference of our own.
        unsafe {
            Arc::increment_strong_count(own);
            return Arc::from_raw(own);
        }
    }
    let node = new_node(None, [0; CREATION_FRAMES], 0);
    node.tid.store(gettid(), Ordering::Release);
    let node = Arc::new(node);
    // During this thread's TLS destruction `ROOT` is gone: the node is then a fresh root, which
    // owns no live thread.
    let owned = ROOT.try_with(|root| *root.borrow_mut() = Some(OwnedRoot(node.clone())));
    if owned.is_ok() {
        CURRENT.set(Arc::as_ptr(&node));
    }
    node
}

/// Records the calling thread's full std name on its node (once), so reports and the whole-binary
/// check can name the test even after its thread is gone. Returns the node.
pub(crate) fn current_named() -> Arc<Node> {
    let node = current();
    if node.name.get().is_none() {
        if let Some(name) = std::thread::current().name() {
            let _ = node.name.set(name.into());
        }
    }
    node
}

/// Registers a thread about to be created by the calling thread and returns its node.
pub(crate) fn register_child() -> Arc<Node> {
    // Written once: a store per creation would dirty the cache line for every reader.
    if !INTERPOSER_SEEN.load(Ordering::Relaxed) {
        INTERPOSER_SEEN.store(true, Ordering::Relaxed);
    }
    let detached = DETACH_NEXT.replace(false);
    let parent = if detached { None } else { Some(current_named()) };
    let mut frames = [0usize; CREATION_FRAMES];
    let len = crate::probe::unwind::trace(&mut frames);
    // The uid is taken under the lock, so the registered nodes are exactly the live ones among
    // those up to `last_uid()` at any moment the lock is held (see `all_registered`).
    let mut registry = registry();
    let node = Arc::new(new_node(parent, frames, len));
    let mut ancestor = node.parent.as_deref();
    while let Some(above) = ancestor {
        above.live_below.fetch_add(1, Ordering::Release);
        ancestor = above.parent.as_deref();
    }
    node.slot.store(registry.live.len(), Ordering::Relaxed);
    registry.live.push(node.clone());
    node
}

/// Installs `node` as the calling (new) thread's own. The caller keeps it alive until
/// [`leave_child`].
pub(crate) fn enter_child(node: &Node) {
    if node.tid.load(Ordering::Acquire) == 0 {
        node.tid.store(gettid(), Ordering::Release);
    }
    CURRENT.set(node);
}

/// Records a just-created thread's kernel id from its `pthread_t`, on the creating thread,
/// without a syscall: glibc's `pthread_getcpuclockid` returns the kernel's per-thread CPU clock
/// id, which encodes the tid (`~tid << 3 | 6`, the kernel's `MAKE_THREAD_CPUCLOCK` ABI); the
/// kernel set the tid before `clone` returned. The new thread then needs no `gettid`.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub(crate) fn record_tid(node: &Node, thread: libc::pthread_t) {
    let mut clock: libc::clockid_t = 0;
    // SAFETY: `thread` was just created and is not joined yet; `clock` is a valid out pointer.
    if unsafe { libc::pthread_getcpuclockid(thread, &mut clock) } != 0 || clock & 7 != 6 {
        return;
    }
    let tid = !(clock >> 3);
    if tid > 0 {
        let _ = node
            .tid
            .compare_exchange(0, tid, Ordering::AcqRel, Ordering::Acquire);
    }
}

/// The calling thread is ending: `node` stops being its own (before its owner drops it).
pub(crate) fn leave_child(node: &Node) {
    if std::ptr::eq(CURRENT.get(), node) {
        CURRENT.set(std::ptr::null());
    }
}

/// Counts thread ends, so a check waiting for threads to finish wakes when one does.
static EXITS: Line<AtomicU64> = Line(AtomicU64::new(0));
/// Checks blocked in [`wait_for_exit`]; an ending thread signals only if there are some.
static WAITING: Line<AtomicUsize> = Line(AtomicUsize::new(0));
static EXIT_LOCK: Mutex<()> = Mutex::new(());
static EXITED: std::sync::Condvar = std::sync::Condvar::new();

/// How many registered threads have ended so far: pass it to [`wait_for_exit`].
pub(crate) fn exit_count() -> u64 {
    EXITS.load(Ordering::SeqCst)
}

/// Blocks until a registered thread ends after `seen` (an [`exit_count`]) or `timeout` passes:
/// a settling check wakes as soon as the thread it waits for is gone, not at its next poll.
pub(crate) fn wait_for_exit(seen: u64, timeout: Duration) {
    WAITING.fetch_add(1, Ordering::SeqCst);
    let guard = EXIT_LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let _ = EXITED.wait_timeout_while(guard, timeout, |_| EXITS.load(Ordering::SeqCst) == seen);
    WAITING.fetch_sub(1, Ordering::SeqCst);
}

/// Counts an ended thread and wakes the checks waiting for one.
fn signal_exit() {
    EXITS.fetch_add(1, Ordering::SeqCst);
    if WAITING.load(Ordering::SeqCst) > 0 {
        // Taking the lock orders this after a waiter's last look at the count.
        drop(EXIT_LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner()));
        EXITED.notify_all();
    }
}

/// Removes a thread that has exited (or failed to start). Idempotent.
pub(crate) fn unregister(node: &Node) {
    if node.exited.swap(true, Ordering::AcqRel) {
        return;
    }
    let mut registry = registry();
    let slot = node.slot.swap(usize::MAX, Ordering::Relaxed);
    // A node that was never registered (a root) has no slot.
    if slot >= registry.live.len() || !std::ptr::eq(&*registry.live[slot], node) {
        return;
    }
    registry.live.swap_remove(slot);
    if let Some(moved) = registry.live.get(slot) {
        moved.slot.store(slot, Ordering::Relaxed);
    }
    let mut ancestor = node.parent.as_deref();
    while let Some(above) = ancestor {
        above.live_below.fetch_sub(1, Ordering::Release);
        ancestor = above.parent.as_deref();
    }
    drop(registry);
    signal_exit();
}

#[cfg(any(
    all(target_os = "linux", target_env = "gnu", not(target_feature = "crt-static")),
    target_os = "macos"
))]
/// The registry's locks, held by a thread that is about to fork (see `probe::fork`).
pub(crate) struct ForkHold {
    registry: MutexGuard<'static, Registry>,
    exit: MutexGuard<'static, ()>,
}

#[cfg(any(
    all(target_os = "linux", target_env = "gnu", not(target_feature = "crt-static")),
    target_os = "macos"
))]
/// Takes the registry's locks (both are leaves: nothing else is locked while either is held).
pub(crate) fn hold_for_fork() -> ForkHold {
    let registry = registry();
    let exit = EXIT_LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    ForkHold { registry, exit }
}

#[cfg(any(
    all(target_os = "linux", target_env = "gnu", not(target_feature = "crt-static")),
    target_os = "macos"
))]
impl ForkHold {
    /// In the child of the fork: only the calling thread exists there, so every other node is
    /// unregistered (its ancestors' counts with it) and no check is waiting for an exit; then
    /// the locks are released. Frees nothing: the nodes of the parent's threads are leaked in
    /// the child, so the child's allocator is never entered here.
    pub(crate) fn in_child(mut self) {
        let own = CURRENT.get();
        let live = &mut self.registry.live;
        let mut index = 0;
        while index < live.len() {
            if std::ptr::eq(Arc::as_ptr(&live[index]), own) {
                live[index].slot.store(index, Ordering::Relaxed);
                index += 1;
                continue;
            }
            let gone = live.swap_remove(index);
            gone.slot.store(usize::MAX, Ordering::Relaxed);
            gone.exited.store(true, Ordering::Release);
            for above in gone.ancestors() {
                above.live_below.fetch_sub(1, Ordering::Release);
            }
            std::mem::forget(gone);
        }
        WAITING.store(0, Ordering::SeqCst);
        drop(self.exit);
    }
}

/// The live threads created by `root`'s thread, directly or transitively. One load when there
/// are none.
pub(crate) fn live_descendants(root: &Node) -> Vec<Arc<Node>> {
    if !root.has_live_descendants() {
        return Vec::new();
    }
    registry()
        .live
        .iter()
        .filter(|node| node.descends_from(root.uid))
        .cloned()
        .collect()
}

/// Every live thread that the interposer saw being created.
pub(crate) fn all_live() -> Vec<Arc<Node>> {
    registry().live.clone()
}

/// Whether every thread of the process but the calling one is registered, judged by the
/// kernel's count of threads (`kernel_count`, read while the registry is locked); if so, the uid
/// of the newest node. `None` before the interposer has seen a creation.
///
/// Under the lock the count is exact: a node with a known kernel id is alive in the kernel
/// (creation registers before `clone`, the id is known only after it, and a thread unregisters,
/// under this lock, before it leaves the kernel), and no node comes or goes. A thread being
/// created or ending meanwhile, or one the registry never saw, only makes the kernel's count
/// larger: the answer is then `None`, never a wrong `Some`. (A thread that left through
/// `pthread_exit` without the exit key would stay registered; the caller asks only with the key.)
pub(crate) fn all_registered(kernel_count: &mut dyn FnMut() -> Option<usize>) -> Option<u64> {
    if !INTERPOSER_SEEN.load(Ordering::Relaxed) {
        return None;
    }
    let registry = registry();
    let started = registry.live.iter().filter(|node| node.tid().is_some()).count();
    // Every registered node got its uid under this lock: those registered from now on have
    // larger ones.
    let last_uid = last_uid();
    let all = kernel_count() == Some(started + 1);
    drop(registry);
    all.then_some(last_uid)
}

/// Looks up a live node by kernel thread id.
pub(crate) fn by_tid(tid: i32) -> Option<Arc<Node>> {
    registry()
        .live
        .iter()
        .find(|node| node.tid() == Some(tid))
        .cloned()
}

/// Makes the next thread created on the calling thread a root that no test owns (`true`), or
/// stops doing so: leakcheck's own helper threads.
pub(crate) fn set_detach_next(detach: bool) {
    DETACH_NEXT.set(detach);
}

/// Whether the interposer has seen a thread being created in this process.
pub(crate) fn interposer_seen() -> bool {
    INTERPOSER_SEEN.load(Ordering::Relaxed)
}

/// Resolves what the interposer needs before threads start (the real `pthread_create`, the exit
/// key); whether thread exits can be seen (the key exists). Called before `main`.
pub(crate) fn prepare() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu", not(target_feature = "crt-static")))]
    {
        let _ = super::interpose::real();
        super::interpose::exit_key().is_some()
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu", not(target_feature = "crt-static"))))]
    false
}

/// The calling thread's id, as the platform lists it.
pub(crate) use crate::probe::sys::current_tid as gettid;

#[cfg(all(
    test,
    target_os = "linux",
    target_env = "gnu",
    not(target_feature = "crt-static")
))]
mod tests {
    use super::*;

    /// The creator records a joinable thread's kernel id as `pthread_create` returns, before
    /// the thread runs, and it is the id the thread itself has.
    #[test]
    fn creator_records_the_tid() {
        std::thread::spawn(|| ()).join().unwrap();
        if !interposer_seen() {
            return;
        }
        for _ in 0..50 {
            let (go, wait) = std::sync::mpsc::channel::<()>();
            let (tell, told) = std::sync::mpsc::channel::<i32>();
            let handle = std::thread::spawn(move || {
                wait.recv().unwrap();
                tell.send(gettid()).unwrap();
            });
            let mine = current();
            let children = live_descendants(&mine);
            let recorded: Vec<i32> = children.iter().filter_map(|node| node.tid()).collect();
            go.send(()).unwrap();
            let tid = told.recv().unwrap();
            assert!(recorded.contains(&tid), "{tid} not in {recorded:?}");
            handle.join().unwrap();
        }
    }
}
