//! Child processes: for every child this process started, the thread that started it.
//!
//! # Design
//!
//! A test owns the child processes that its thread started, directly or through threads it
//! started, as it owns threads ([`super::lineage`]). The interposed process-creating entry points
//! ([`interpose`]: `posix_spawn`, `posix_spawnp`, `fork`, `vfork`) record each child on the
//! creating thread: its pid, the creating thread's lineage [`Node`], the raw creation backtrace,
//! a copy of its argument vector (a zombie's `/proc/<pid>/cmdline` is empty), and the
//! `CLOCK_BOOTTIME` of its creation (to tell a reused pid apart and to say its age).
//!
//! The registry holds the children by pid; the creator and every ancestor of the creator count
//! their recorded children (`Node::children_below`), so a check whose thread started none reads
//! one counter: no lock, no lookup, no `/proc`. Only a check with something to find walks the
//! registry (children are few: a walk is cheaper than keeping a per-ancestor index).
//!
//! Liveness never reaps: [`liveness`] asks `waitid(P_PID, pid, WEXITED | WNOHANG | WNOWAIT)`,
//! which leaves an exited child for std's or tokio's own `wait`. Entries whose child was reaped
//! are dropped when a look finds them gone; a pid recorded again replaces the old entry (the old
//! child was reaped, or the kernel could not have reused its pid).
//!
//! Not seen: children started by glibc's `system` and `popen` (they call glibc's internal
//! `__posix_spawn`, which cannot be interposed), and grandchildren (a child's own children).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex, MutexGuard};
use std::time::Duration;

use super::lineage::{self, Node};

#[cfg(all(target_os = "linux", target_env = "gnu", not(target_feature = "crt-static")))]
pub(crate) mod interpose;
pub(crate) mod proc;

/// Most arguments copied from a child's argument vector.
const ARGS_KEPT: usize = 16;
/// Longest argument copied, in bytes.
const ARG_BYTES: usize = 256;
/// Past this many entries, recording a child first drops entries whose child was reaped.
const SWEEP_AT: usize = 1024;

/// One child process this process started.
pub(crate) struct Child {
    /// Process-unique; pids are reused, these never are.
    pub(crate) uid: u64,
    pub(crate) pid: i32,
    /// The thread that started it.
    pub(crate) creator: Arc<Node>,
    /// Raw instruction pointers of the creation backtrace, innermost first.
    pub(crate) created_at: Box<[usize]>,
    /// Its argument vector as passed to `posix_spawn` (empty for `fork`).
    pub(crate) argv: Vec<String>,
    /// `CLOCK_BOOTTIME` when it was started.
    pub(crate) started: Duration,
    /// The entry point that started it: `posix_spawn`, `posix_spawnp`, `fork`.
    pub(crate) via: &'static str,
}

/// What `waitid(..., WNOWAIT)` says about a child.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Liveness {
    Running,
    /// Exited but not waited for.
    Zombie,
    /// Reaped (or not a child of this process).
    Gone,
}

#[derive(Default)]
struct Registry {
    by_pid: HashMap<i32, Arc<Child>>,
}

static REGISTRY: LazyLock<Mutex<Registry>> = LazyLock::new(Default::default);

fn registry() -> MutexGuard<'static, Registry> {
    // Nothing panics while holding the lock; a poisoned lock still holds consistent data.
    REGISTRY.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Registry {
    fn remove(&mut self, pid: i32) {
        let Some(child) = self.by_pid.remove(&pid) else {
            return;
        };
        for node in std::iter::once(&*child.creator).chain(child.creator.ancestors()) {
            node.children_below.fetch_sub(1, Ordering::Release);
        }
    }
}

#[cfg(all(target_os = "linux", target_env = "gnu", not(target_feature = "crt-static")))]
/// The child-process registry's lock, held by a thread that is about to fork (see
/// `probe::fork`). A leaf: nothing else is locked while it is held.
pub(crate) struct ForkHold(MutexGuard<'static, Registry>);

#[cfg(all(target_os = "linux", target_env = "gnu", not(target_feature = "crt-static")))]
pub(crate) fn hold_for_fork() -> ForkHold {
    ForkHold(registry())
}

#[cfg(all(target_os = "linux", target_env = "gnu", not(target_feature = "crt-static")))]
impl ForkHold {
    /// In the child of the fork: the parent's children are not the child's. Frees nothing (the
    /// records are leaked in the child).
    pub(crate) fn in_child(mut self) {
        for (_, child) in self.0.by_pid.drain() {
            for node in std::iter::once(&*child.creator).chain(child.creator.ancestors()) {
                node.children_below.fetch_sub(1, Ordering::Release);
            }
            std::mem::forget(child);
        }
    }
}

/// Records a child just started by the calling thread (in the parent, after the fork or spawn).
#[cfg_attr(
    not(all(target_os = "linux", target_env = "gnu", not(target_feature = "crt-static"))),
    allow(dead_code)
)]
pub(crate) fn record(pid: i32, created_at: &[usize], argv: Vec<String>, via: &'static str) {
    let started = boottime();
    let creator = lineage::current_named();
    static NEXT_UID: AtomicU64 = AtomicU64::new(1);
    let child = Arc::new(Child {
        uid: NEXT_UID.fetch_add(1, Ordering::Relaxed),
        pid,
        creator,
        created_at: created_at.into(),
        argv,
        started,
        via,
    });
    let mut registry = registry();
    if registry.by_pid.len() >= SWEEP_AT {
        let gone: Vec<i32> = registry
            .by_pid
            .keys()
            .copied()
            .filter(|&pid| liveness(pid) == Liveness::Gone)
            .collect();
        for pid in gone {
            registry.remove(pid);
        }
    }
    // A recorded pid can only be reused once its child was reaped: the old entry is stale.
    registry.remove(pid);
    for node in std::iter::once(&*child.creator).chain(child.creator.ancestors()) {
        node.children_below.fetch_add(1, Ordering::Release);
    }
    registry.by_pid.insert(pid, child);
}

/// Whether `root`'s thread or its descendants have recorded children not yet dropped (running,
/// zombies, or reaped since the last look). One load.
pub(crate) fn any_below(root: &Node) -> bool {
    root.children_below.load(Ordering::Acquire) != 0
}

/// The not-yet-reaped children started by `root`'s thread or its descendants, with their
/// liveness. Drops the entries of reaped children. Costs one load when there are none.
pub(crate) fn descendants_of(root: &Node) -> Vec<(Arc<Child>, Liveness)> {
    if !any_below(root) {
        return Vec::new();
    }
    let mut registry = registry();
    let pids: Vec<i32> = registry
        .by_pid
        .values()
        .filter(|child| child.creator.uid == root.uid || child.creator.descends_from(root.uid))
        .map(|child| child.pid)
        .collect();
    look(&mut registry, pids)
}

/// Every not-yet-reaped child in the registry, with its liveness.
pub(crate) fn all() -> Vec<(Arc<Child>, Liveness)> {
    let mut registry = registry();
    let pids: Vec<i32> = registry.by_pid.keys().copied().collect();
    look(&mut registry, pids)
}

/// The recorded child with this pid, if any.
pub(crate) fn by_pid(pid: i32) -> Option<Arc<Child>> {
    registry().by_pid.get(&pid).cloned()
}

fn look(registry: &mut Registry, pids: Vec<i32>) -> Vec<(Arc<Child>, Liveness)> {
    let mut found = Vec::new();
    for pid in pids {
        match liveness(pid) {
            Liveness::Gone => registry.remove(pid),
            state => {
                if let Some(child) = registry.by_pid.get(&pid) {
                    found.push((child.clone(), state));
                }
            }
        }
    }
    found
}

/// Whether child `pid` runs, exited unwaited, or is gone; never reaps it.
#[cfg(target_os = "linux")]
pub(crate) fn liveness(pid: i32) -> Liveness {
    // SAFETY: `info` is a valid out-parameter; WNOWAIT leaves the child waitable.
    unsafe {
        let mut info: libc::siginfo_t = std::mem::zeroed();
        let result = libc::waitid(
            libc::P_PID,
            pid as libc::id_t,
            &mut info,
            libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
        );
        if result != 0 {
            return Liveness::Gone;
        }
        if info.si_pid() == 0 {
            Liveness::Running
        } else {
            Liveness::Zombie
        }
    }
}

#[cfg(not(target_os = "linux"))]
pub(crate) fn liveness(_pid: i32) -> Liveness {
    Liveness::Gone
}

/// `CLOCK_BOOTTIME` now (the clock `/proc/<pid>/stat`'s start time counts on).
pub(crate) fn boottime() -> Duration {
    #[cfg(target_os = "linux")]
    {
        let mut now = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: `now` is a valid out-parameter.
        unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut now) };
        Duration::new(now.tv_sec as u64, now.tv_nsec as u32)
    }
    #[cfg(not(target_os = "linux"))]
    Duration::ZERO
}

/// Copies a C argument vector (bounded: [`ARGS_KEPT`] arguments of [`ARG_BYTES`] bytes).
#[cfg_attr(
    not(all(target_os = "linux", target_env = "gnu", not(target_feature = "crt-static"))),
    allow(dead_code)
)]
///
/// # Safety
///
/// `argv` is null or a null-terminated array of valid C strings.
pub(crate) unsafe fn copy_argv(argv: *const *mut libc::c_char) -> Vec<String> {
    let mut args = Vec::new();
    if argv.is_null() {
        return args;
    }
    for i in 0..ARGS_KEPT {
        // SAFETY: within the null-terminated array (we stop at the terminator).
        let arg = unsafe { *argv.add(i) };
        if arg.is_null() {
            break;
        }
        // SAFETY: a valid C string, per the contract.
        let bytes = unsafe { std::ffi::CStr::from_ptr(arg) }.to_bytes();
        let bytes = &bytes[..bytes.len().min(ARG_BYTES)];
        args.push(String::from_utf8_lossy(bytes).into_owned());
    }
    args
}

/// Kills (`SIGKILL`) child `pid` if it still runs and is still the child `started` describes,
/// then reaps it. Returns whether it is gone. Waits at most `patience` for it to exit.
#[cfg(target_os = "linux")]
pub(crate) fn kill_and_reap(pid: i32, started: Option<Duration>, patience: Duration) -> bool {
    // A pidfd pins the process: a signal through it can never reach a process that reused the pid.
    // SAFETY: plain system calls on integer arguments.
    let pidfd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) } as i32;
    let same = liveness(pid) != Liveness::Gone
        && started.is_none_or(|started| {
            // A later process with this pid started after the recorded child did.
            proc::stat(pid).is_none_or(|stat| stat.started <= started + Duration::from_millis(50))
        });
    if !same {
        if pidfd >= 0 {
            // SAFETY: closing the descriptor we opened.
            unsafe { libc::close(pidfd) };
        }
        return false;
    }
    // SAFETY: signalling our own child, through its pidfd when the kernel has them.
    unsafe {
        if pidfd >= 0 {
            libc::syscall(
                libc::SYS_pidfd_send_signal,
                pidfd,
                libc::SIGKILL,
                std::ptr::null::<libc::siginfo_t>(),
                0,
            );
            libc::close(pidfd);
        } else {
            libc::kill(pid, libc::SIGKILL);
        }
    }
    let deadline = std::time::Instant::now() + patience;
    loop {
        match liveness(pid) {
            Liveness::Gone => return true,
            Liveness::Zombie => {
                // SAFETY: reaping our own exited child.
                unsafe { libc::waitpid(pid, std::ptr::null_mut(), libc::WNOHANG) };
                return true;
            }
            Liveness::Running if std::time::Instant::now() >= deadline => return false,
            Liveness::Running => std::thread::sleep(Duration::from_millis(1)),
        }
    }
}

#[cfg(not(target_os = "linux"))]
pub(crate) fn kill_and_reap(_pid: i32, _started: Option<Duration>, _patience: Duration) -> bool {
    false
}
