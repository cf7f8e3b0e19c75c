//! Child processes on Windows: whether a recorded child still runs, how it is ended, and the
//! clock its start counts on. The hook that records children is `windows_hook`'s
//! `create_process_w`.
//!
//! A child is named by its pid and its creation time (`GetProcessTimes`): Windows reuses a pid
//! once every handle to the old process is closed, and the creation time tells the new process
//! apart. An exited child has nothing to reap (its exit code stays readable while a handle, such as
//! std's `Child`, is open), so it counts as gone: there is no zombie state.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use windows_sys::Win32::Foundation::{CloseHandle, FILETIME, HANDLE, WAIT_OBJECT_0, WAIT_TIMEOUT};
use windows_sys::Win32::System::Threading::{
    GetProcessTimes, OpenProcess, TerminateProcess, WaitForSingleObject, PROCESS_QUERY_LIMITED_INFORMATION,
    PROCESS_SYNCHRONIZE, PROCESS_TERMINATE,
};

use super::Liveness;

/// The Unix epoch on `FILETIME`'s clock (100 ns units since 1601-01-01).
const UNIX_EPOCH_AS_FILETIME: Duration = Duration::from_secs(11_644_473_600);

/// The time now, on the clock of `GetProcessTimes`' creation times (since 1601, UTC).
pub(super) fn clock() -> Duration {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default() + UNIX_EPOCH_AS_FILETIME
}

/// When the process behind `handle` was created, on [`clock`].
pub(super) fn creation_time(handle: HANDLE) -> Option<Duration> {
    let mut times = [FILETIME::default(); 4];
    let [created, exited, kernel, user] = &mut times;
    // SAFETY: four valid out-parameters; a bad handle makes the call fail.
    let ok = unsafe { GetProcessTimes(handle, created, exited, kernel, user) } != 0;
    let ticks = (u64::from(times[0].dwHighDateTime) << 32) | u64::from(times[0].dwLowDateTime);
    (ok && ticks != 0).then(|| Duration::from_nanos(ticks.saturating_mul(100)))
}

/// A handle to a child process, closed on drop.
struct Process(HANDLE);

impl Process {
    /// Opens `pid` with `access` if it is the process created at `started` (zero: any).
    fn open(pid: i32, access: u32, started: Duration) -> Option<Process> {
        // SAFETY: plain arguments; the handle is checked before use.
        let handle = unsafe { OpenProcess(access | PROCESS_QUERY_LIMITED_INFORMATION, 0, pid as u32) };
        if handle.is_null() {
            return None;
        }
        let process = Process(handle);
        (started == Duration::ZERO || creation_time(process.0) == Some(started)).then_some(process)
    }

    fn running(&self) -> bool {
        // SAFETY: an open handle with SYNCHRONIZE access.
        unsafe { WaitForSingleObject(self.0, 0) == WAIT_TIMEOUT }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        // SAFETY: a handle this value owns, closed once.
        unsafe { CloseHandle(self.0) };
    }
}

pub(super) fn liveness(pid: i32, started: Duration) -> Liveness {
    match Process::open(pid, PROCESS_SYNCHRONIZE, started) {
        Some(process) if process.running() => Liveness::Running,
        _ => Liveness::Gone,
    }
}

/// Ends child `pid` with `TerminateProcess` if it still runs and is the process created at
/// `started`; returns whether it exited within `patience`. Without a creation time (a child
/// found by listing, not recorded by the hook) it must still be listed as this process's child:
/// a pid freed since the listing may name an unrelated process now.
pub(super) fn kill(pid: i32, started: Option<Duration>, patience: Duration) -> bool {
    let started = started.filter(|started| !started.is_zero());
    if started.is_none() && !super::child_pids().is_some_and(|pids| pids.contains(&pid)) {
        return false;
    }
    let access = PROCESS_TERMINATE | PROCESS_SYNCHRONIZE;
    let Some(process) = Process::open(pid, access, started.unwrap_or_default()) else {
        return false;
    };
    if !process.running() {
        return false;
    }
    let millis = u32::try_from(patience.as_millis()).unwrap_or(u32::MAX);
    // SAFETY: an open handle with PROCESS_TERMINATE and SYNCHRONIZE access.
    unsafe { TerminateProcess(process.0, 1) != 0 && WaitForSingleObject(process.0, millis) == WAIT_OBJECT_0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The hook records a child with its creation time; a different creation time names another
    /// process (a reused pid), which is neither running nor killed; the child itself is.
    #[test]
    fn creation_time_tells_the_recorded_child_apart() {
        let mut child = std::process::Command::new("ping")
            .args(["-n", "30", "127.0.0.1"])
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let pid = child.id() as i32;
        let recorded = crate::probe::children::by_pid(pid).expect("recorded by the hook");
        assert_eq!(recorded.via, "CreateProcessW");
        assert_eq!(recorded.argv, ["ping", "-n", "30", "127.0.0.1"]);
        let started = recorded.started;
        assert!(started > Duration::ZERO && started <= clock());
        assert_eq!(liveness(pid, started), Liveness::Running);
        let other = started + Duration::from_micros(1);
        assert_eq!(liveness(pid, other), Liveness::Gone);
        assert!(!kill(pid, Some(other), Duration::from_secs(1)));
        assert!(kill(pid, Some(started), Duration::from_secs(5)));
        assert_eq!(liveness(pid, started), Liveness::Gone);
        child.wait().unwrap();
    }
}
