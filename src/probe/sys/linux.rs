//! Linux: threads and their state from `/proc/self` (`probe::procfs`), stacks by the signal
//! protocol (`probe::stack`), creation hooked by interposing `pthread_create`, `posix_spawn` and
//! `fork` (`probe::lineage`, `probe::children`) where glibc is linked dynamically.

use std::time::Duration;

use super::{ChildStat, Liveness, Unseen};
use crate::model::KernelWait;
use crate::probe::children::proc;
use crate::probe::procfs;

/// Linux sees everything; what a static or musl build lacks (the interposers, stacks), its
/// reports say per check (the mode note, each thread's missing stack).
pub(crate) const UNSEEN: &[Unseen] = &[];

pub(crate) fn threads() -> Option<Vec<i32>> {
    Some(procfs::process_tids())
}

pub(crate) fn thread_count() -> Option<usize> {
    procfs::thread_count()
}

pub(crate) fn thread_name(tid: i32) -> Option<String> {
    procfs::thread_name(tid)
}

pub(crate) fn kernel_wait(tid: i32) -> KernelWait {
    procfs::kernel_wait(tid)
}

pub(crate) fn current_tid() -> i32 {
    // SAFETY: gettid has no preconditions.
    unsafe { libc::gettid() }
}

pub(crate) fn creation_hook() -> Result<(), &'static str> {
    if cfg!(target_feature = "crt-static") {
        Err(
            "this is a static build (`+crt-static`): `pthread_create` cannot be interposed, as \
             there is no libc definition to forward to",
        )
    } else if !cfg!(target_env = "gnu") {
        Err("`pthread_create` is interposed only on Linux with glibc, not on this target")
    } else {
        Ok(())
    }
}

pub(crate) fn child_pids() -> Option<Vec<i32>> {
    Some(proc::child_pids())
}

#[cfg(test)]
pub(crate) fn syscall_number(name: &str) -> Option<i64> {
    match name {
        "futex" => Some(libc::SYS_futex),
        "clock_nanosleep" => Some(libc::SYS_clock_nanosleep),
        _ => None,
    }
}

/// glibc's `on_exit` tells the exit status; musl has only `atexit`.
pub(crate) fn at_exit(handler: fn(Option<i32>)) {
    #[cfg(target_env = "gnu")]
    {
        extern "C" {
            fn on_exit(
                function: extern "C" fn(libc::c_int, *mut libc::c_void),
                arg: *mut libc::c_void,
            ) -> libc::c_int;
        }
        extern "C" fn run(status: libc::c_int, _: *mut libc::c_void) {
            if let Some(handler) = super::AT_EXIT.get() {
                handler(Some(status));
            }
        }
        if super::AT_EXIT.set(handler).is_ok() {
            // SAFETY: registering a plain function with no argument.
            unsafe { on_exit(run, std::ptr::null_mut()) };
        }
    }
    #[cfg(not(target_env = "gnu"))]
    super::at_exit_without_status(handler);
}

/// The interposers need nothing installed: the linker put them in place.
pub(crate) fn before_main() {}

/// `posix_spawn`, `posix_spawnp`, `fork` and `vfork` are interposed where `pthread_create` is.
pub(crate) fn children_hooked() -> bool {
    creation_hook().is_ok()
}

/// How [`kill_child`] ends a child, for the report's note.
pub(crate) const KILLED: &str = "killed (SIGKILL) and reaped";

/// `CLOCK_BOOTTIME` now (the clock `/proc/<pid>/stat`'s start time counts on).
pub(crate) fn process_clock() -> Duration {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `now` is a valid out-parameter.
    unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut now) };
    Duration::new(now.tv_sec as u64, now.tv_nsec as u32)
}

/// Whether child `pid` runs, exited unwaited, or is gone: `waitid(..., WNOWAIT)`, which never
/// reaps it. A pid is reused only once its child was reaped, so `started` is not needed.
pub(crate) fn child_liveness(pid: i32, _started: Duration) -> Liveness {
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

pub(crate) fn child_stat(pid: i32) -> Option<ChildStat> {
    proc::stat(pid).map(|stat| ChildStat {
        state: stat.state,
        started: stat.started,
    })
}

pub(crate) fn child_cmdline(pid: i32) -> Vec<String> {
    proc::cmdline(pid)
}

/// Kills (`SIGKILL`) child `pid` if it still runs and is still the child `started` describes,
/// then reaps it. Returns whether it is gone. Waits at most `patience` for it to exit.
pub(crate) fn kill_child(pid: i32, started: Option<Duration>, patience: Duration) -> bool {
    // A pidfd pins the process: a signal through it can never reach a process that reused the pid.
    // SAFETY: plain system calls on integer arguments.
    let pidfd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) } as i32;
    let same = child_liveness(pid, Duration::ZERO) != Liveness::Gone
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
        match child_liveness(pid, Duration::ZERO) {
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
