//! Child processes: for every child this process started, the thread that started it.
//!
//! # Design
//!
//! A test owns the child processes that its thread started, directly or through threads it
//! started, as it owns threads ([`super::lineage`]). The hooked process-creating entry points
//! (Linux: [`interpose`]'s `posix_spawn`, `posix_spawnp`, `fork`, `vfork`; Windows: the
//! executable's import of `CreateProcessW`, in `sys/windows_hook.rs`) record each child on the
//! creating thread: its pid, the creating thread's lineage [`Node`], the raw creation backtrace,
//! a copy of its argument vector (a zombie's `/proc/<pid>/cmdline` is empty; on Windows, the
//! command line split as the child's C runtime splits it), and its start on
//! [`sys::process_clock`] (to tell a reused pid apart and to say its age).
//!
//! The registry holds the children by pid; the creator and every ancestor of the creator count
//! their recorded children (`Node::children_below`), so a check whose thread started none reads
//! one counter: no lock, no lookup, no `/proc`. Only a check with something to find walks the
//! registry (children are few: a walk is cheaper than keeping a per-ancestor index).
//!
//! Liveness never reaps ([`sys::child_liveness`]): Linux asks `waitid(P_PID, pid, WEXITED |
//! WNOHANG | WNOWAIT)`, which leaves an exited child for std's or tokio's own `wait`; Windows
//! opens the process and checks that its creation time is the recorded one (a pid is reused once
//! every handle to the old process is closed) and that it has not exited (an exited Windows
//! process has nothing to reap: it counts as gone). Entries whose child is gone are dropped when
//! a look finds them gone; a pid recorded again replaces the old entry (the old child was reaped,
//! or the kernel could not have reused its pid).
//!
//! The platform's parts (liveness, state, command line, clock, kill) are `probe::sys`'s; the
//! registry and everything above it are shared.
//!
//! Not seen: children started by glibc's `system` and `popen` (they call glibc's internal
//! `__posix_spawn`, which cannot be interposed); on Windows, children started through other
//! modules' imports (a DLL's own `CreateProcessW` call, `ShellExecute`, `CreateProcessA`, which
//! neither std nor tokio calls); grandchildren (a child's own children) everywhere.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex, MutexGuard};
use std::time::Duration;

use super::lineage::{self, Node};
use super::sys;

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
    /// Its argument vector as passed to `posix_spawn` (empty for `fork`), or the command line
    /// passed to `CreateProcessW` split as the child's C runtime splits it.
    pub(crate) argv: Vec<String>,
    /// When it was started, on [`sys::process_clock`] (`CLOCK_BOOTTIME` on Linux, the process's
    /// creation time on Windows, which also tells a reused pid apart there); zero if unknown.
    pub(crate) started: Duration,
    /// The entry point that started it: `posix_spawn`, `posix_spawnp`, `fork`, `CreateProcessW`.
    pub(crate) via: &'static str,
}

pub(crate) use super::sys::Liveness;

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

#[cfg(any(
    all(target_os = "linux", target_env = "gnu", not(target_feature = "crt-static")),
    target_os = "macos"
))]
/// The child-process registry's lock, held by a thread that is about to fork (see
/// `probe::fork`). A leaf: nothing else is locked while it is held.
pub(crate) struct ForkHold(MutexGuard<'static, Registry>);

#[cfg(any(
    all(target_os = "linux", target_env = "gnu", not(target_feature = "crt-static")),
    target_os = "macos"
))]
pub(crate) fn hold_for_fork() -> ForkHold {
    ForkHold(registry())
}

#[cfg(any(
    all(target_os = "linux", target_env = "gnu", not(target_feature = "crt-static")),
    target_os = "macos"
))]
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

/// Records a child just started by the calling thread (in the parent, after the fork or spawn),
/// `started` at that time on [`sys::process_clock`].
#[cfg_attr(
    not(any(
        all(target_os = "linux", target_env = "gnu", not(target_feature = "crt-static")),
        windows
    )),
    allow(dead_code)
)]
pub(crate) fn record(
    pid: i32,
    created_at: &[usize],
    argv: Vec<String>,
    started: Duration,
    via: &'static str,
) {
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
            .values()
            .filter(|child| liveness(child) == Liveness::Gone)
            .map(|child| child.pid)
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
        let Some(child) = registry.by_pid.get(&pid).cloned() else {
            continue;
        };
        match liveness(&child) {
            Liveness::Gone => registry.remove(pid),
            state => found.push((child, state)),
        }
    }
    found
}

/// Whether a recorded child runs, exited unwaited, or is gone; never reaps it.
fn liveness(child: &Child) -> Liveness {
    sys::child_liveness(child.pid, child.started)
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

/// Splits a Windows command line into arguments as the Microsoft C runtime does (what
/// `std::process::Command` builds on Windows): whitespace separates arguments outside double
/// quotes; `2n` backslashes before a quote are `n` backslashes and the quote opens or closes,
/// `2n + 1` are `n` and a literal quote; other backslashes are literal. Bounded as
/// [`copy_argv`] is.
#[cfg_attr(not(any(windows, test)), allow(dead_code))]
pub(crate) fn split_command_line(line: &str) -> Vec<String> {
    let mut args = Vec::new();
    let mut chars = line.chars().peekable();
    loop {
        while chars.next_if(|c| *c == ' ' || *c == '\t').is_some() {}
        if chars.peek().is_none() || args.len() == ARGS_KEPT {
            return args;
        }
        let (mut arg, mut quoted) = (String::new(), false);
        while let Some(c) = chars.next() {
            match c {
                '\\' => {
                    let mut slashes = 1;
                    while chars.next_if_eq(&'\\').is_some() {
                        slashes += 1;
                    }
                    let before_quote = chars.peek() == Some(&'"');
                    arg.extend(std::iter::repeat_n(
                        '\\',
                        if before_quote { slashes / 2 } else { slashes },
                    ));
                    if before_quote && slashes % 2 == 1 {
                        arg.push('"');
                        chars.next();
                    }
                }
                '"' if quoted && chars.peek() == Some(&'"') => {
                    arg.push('"');
                    chars.next();
                }
                '"' => quoted = !quoted,
                ' ' | '\t' if !quoted => break,
                c => arg.push(c),
            }
        }
        let end = (0..=arg.len().min(ARG_BYTES))
            .rev()
            .find(|&at| arg.is_char_boundary(at))
            .unwrap_or(0);
        arg.truncate(end);
        args.push(arg);
    }
}

#[cfg(test)]
mod tests {
    use super::split_command_line;

    /// Quotes group, escaped quotes and backslashes follow the C runtime's rules.
    #[test]
    fn splits_windows_command_lines() {
        assert_eq!(
            split_command_line(r#""ping" -n 31 127.0.0.1"#),
            ["ping", "-n", "31", "127.0.0.1"]
        );
        assert_eq!(
            split_command_line(r#""C:\Program Files\x.exe" "a b"  c"#),
            [r"C:\Program Files\x.exe", "a b", "c"]
        );
        assert_eq!(
            split_command_line(r#"a\\"b c" d\"e f\\g"#),
            [r#"a\b c"#, r#"d"e"#, r"f\\g"]
        );
        assert_eq!(split_command_line(r#""say ""hi""" """#), [r#"say "hi""#, ""]);
        assert!(split_command_line("   ").is_empty());
    }
}
