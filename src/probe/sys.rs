//! The platform interface: what a check needs from the operating system, one module per platform
//! behind it, chosen here and nowhere else (std's `sys/` and mio's `sys/{unix,windows}` are the
//! model). Code above `probe/` asks this module, never a platform.
//!
//! - [`threads`]: the process's threads by id, or `None` where they cannot be listed;
//! - [`thread_count`]: how many threads the process has, or `None`;
//! - [`thread_name`]: a thread's name;
//! - [`kernel_wait`]: what the OS says a thread is waiting on (unknown parts `None`);
//! - [`current_tid`]: the calling thread's id, as [`threads`] lists it;
//! - [`capture`]: other threads' current stacks (see `probe::stack`);
//! - [`before_main`]: installs what must be in place before the program's threads start (the
//!   creation hook, where it is patched in at run time);
//! - [`creation_hook`]: whether thread creation is hooked here, or why not;
//! - [`children_hooked`]: whether child-process creation is hooked too;
//! - [`child_pids`]: the process's running children, or `None`;
//! - [`child_liveness`], [`child_stat`], [`child_cmdline`], [`kill_child`], [`process_clock`],
//!   [`KILLED`]: what the OS says of one child process (whether it runs, its state and start, its
//!   command line), how it is ended, and the clock its start time counts on;
//! - [`at_exit`]: runs a function at process exit, with the exit status where the C library
//!   tells it;
//! - [`UNSEEN`]: what this platform cannot see at all, said once per process instead of a silent
//!   pass.
//!
//! Backends: `linux` (`/proc`, the signal protocol, the `pthread_create` and `posix_spawn`
//! interposers), `windows` (Toolhelp snapshots, thread descriptions, the `CreateThread` and
//! `CreateProcessW` import hooks, process handles, waits read from where a suspended thread
//! stands), `macos` (Mach thread ports, libpthread's introspection hook; `target_os = "macos"`,
//! as `libproc` is macOS-only) and `fallback` (every other target: it lists nothing and says so).

#[cfg(target_os = "linux")]
#[path = "sys/linux.rs"]
mod imp;
#[cfg(windows)]
#[path = "sys/windows.rs"]
mod imp;
#[cfg(target_os = "macos")]
#[path = "sys/macos.rs"]
mod imp;
#[cfg(not(any(target_os = "linux", windows, target_os = "macos")))]
#[path = "sys/fallback.rs"]
mod imp;

pub(crate) use imp::{
    at_exit, before_main, child_cmdline, child_liveness, child_pids, child_stat, children_hooked,
    creation_hook, current_tid, kernel_wait, kill_child, process_clock, thread_count, thread_name, threads,
    KILLED, UNSEEN,
};

/// This task's port (`mach_task_self()`), for the stack capture's suspend-and-copy.
#[cfg(target_os = "macos")]
pub(crate) use imp::task;

/// The number of system call `name` where wait readings carry system calls (Linux), else
/// `None`: for tests of the wait classification.
#[cfg(test)]
pub(crate) use imp::syscall_number;

/// The child-process answers of backends that record no child (macOS, and targets without a
/// backend): children are diffed there, so nothing asks about a recorded one; the diff's reports
/// say what they do not know (state, age), and leaked children are not killed.
#[cfg(not(any(target_os = "linux", windows)))]
mod unrecorded {
    use std::time::Duration;

    use super::{ChildStat, Liveness};

    pub(crate) const KILLED: &str = "killed";

    pub(crate) fn process_clock() -> Duration {
        Duration::ZERO
    }

    pub(crate) fn child_liveness(_pid: i32, _started: Duration) -> Liveness {
        Liveness::Gone
    }

    pub(crate) fn child_stat(_pid: i32) -> Option<ChildStat> {
        None
    }

    pub(crate) fn child_cmdline(_pid: i32) -> Vec<String> {
        Vec::new()
    }

    pub(crate) fn kill_child(_pid: i32, _started: Option<Duration>, _patience: Duration) -> bool {
        false
    }
}

/// A capability this platform lacks: what goes unchecked, and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Unseen {
    /// What is not checked (`threads`, `child processes`, `stacks`).
    pub(crate) what: &'static str,
    /// Why, in a few words a user can act on.
    pub(crate) why: &'static str,
}

/// Whether a child process runs, as [`child_liveness`] reads it; never reaps it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Liveness {
    Running,
    /// Exited but not waited for (Linux; a Windows process has no such state to reap).
    Zombie,
    /// Reaped, exited (Windows), or not the recorded child any more.
    Gone,
}

/// What the OS says of a child process now, where it says it ([`child_stat`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ChildStat {
    /// Its state letter, as `/proc/<pid>/stat` gives it (`S` sleeping, `Z` zombie, ...).
    pub(crate) state: char,
    /// When it started, on [`process_clock`].
    pub(crate) started: std::time::Duration,
}

/// The handler [`at_exit`] runs, once.
static AT_EXIT: std::sync::OnceLock<fn(Option<i32>)> = std::sync::OnceLock::new();

/// Registers `handler` with `atexit`, which does not tell the exit status (`None`).
#[cfg_attr(all(target_os = "linux", target_env = "gnu"), allow(dead_code))]
fn at_exit_without_status(handler: fn(Option<i32>)) {
    extern "C" fn run() {
        if let Some(handler) = AT_EXIT.get() {
            handler(None);
        }
    }
    if AT_EXIT.set(handler).is_ok() {
        // SAFETY: registering a plain function.
        unsafe { libc::atexit(run) };
    }
}

/// Captures the current stack of each thread in `tids`: see [`super::stack::capture`]. The
/// backend for this lives in `probe::stack` (the signal protocol on Linux with glibc, suspension
/// and a frame-pointer walk on macOS, suspension and the system's unwinder on Windows x86_64, a
/// "not captured here" answer elsewhere).
pub(crate) use super::stack::capture;
