//! Windows: the process's threads from a Toolhelp snapshot, their names from
//! `GetThreadDescription` (what `std::thread::Builder::name` sets), its children from a process
//! snapshot (those whose parent is this process). Thread and process creation are hooked
//! ([`hook`]: the executable's imports of `CreateThread` and `CreateProcessW`), so threads and
//! child processes are attributed per test as on Linux; a recorded child's liveness, end and
//! creation time are [`children`]'s. Other threads' stacks are captured by suspending them
//! (`probe::stack`'s Windows backend), and their waits read from where they stand ([`wait`]).

#[path = "windows_children.rs"]
mod children;
#[path = "windows_hook.rs"]
mod hook;
#[path = "windows_wait.rs"]
mod wait;

use std::ffi::c_void;
use std::time::Duration;

use windows_sys::Win32::Foundation::{CloseHandle, LocalFree, HANDLE, INVALID_HANDLE_VALUE};
use windows_sys::Win32::System::Diagnostics::ToolHelp::{
    CreateToolhelp32Snapshot, Process32FirstW, Process32NextW, Thread32First, Thread32Next, PROCESSENTRY32W,
    TH32CS_SNAPPROCESS, TH32CS_SNAPTHREAD, THREADENTRY32,
};
use windows_sys::Win32::System::Threading::{
    GetCurrentProcessId, GetCurrentThreadId, GetProcessIdOfThread, GetThreadDescription, OpenThread,
    THREAD_QUERY_LIMITED_INFORMATION,
};

use super::{ChildStat, Liveness, Unseen};
use crate::model::KernelWait;

/// Checks run here with lineage, as on Linux (threads and children); these parts are missing.
pub(crate) const UNSEEN: &[Unseen] = &[
    Unseen {
        what: "leaked threads' wake-ups and what their IO waits on",
        why: "not read on Windows: a sleep loop shows as a sleep, a socket wait without its address",
    },
    Unseen {
        what: "child processes started outside the executable's `CreateProcessW` import",
        why: "a DLL's own imports, `CreateProcessA` and `ShellExecute` are not hooked; std and tokio \
              start every child through the hooked import",
    },
];

/// A Toolhelp snapshot, closed on drop.
struct Snapshot(HANDLE);

impl Snapshot {
    fn take(flags: u32) -> Option<Snapshot> {
        // SAFETY: no pointer arguments; the handle is checked before use.
        let handle = unsafe { CreateToolhelp32Snapshot(flags, 0) };
        (handle != INVALID_HANDLE_VALUE && !handle.is_null()).then_some(Snapshot(handle))
    }
}

impl Drop for Snapshot {
    fn drop(&mut self) {
        // SAFETY: a handle this snapshot owns, closed once.
        unsafe { CloseHandle(self.0) };
    }
}

pub(crate) fn threads() -> Option<Vec<i32>> {
    let snapshot = Snapshot::take(TH32CS_SNAPTHREAD)?;
    // SAFETY: no preconditions.
    let own = unsafe { GetCurrentProcessId() };
    let mut entry = THREADENTRY32 {
        dwSize: size_of::<THREADENTRY32>() as u32,
        ..Default::default()
    };
    let mut tids = Vec::new();
    // SAFETY: `entry` is a valid, sized THREADENTRY32 for the whole walk.
    let mut more = unsafe { Thread32First(snapshot.0, &mut entry) } != 0;
    while more {
        if entry.th32OwnerProcessID == own {
            tids.push(entry.th32ThreadID as i32);
        }
        // SAFETY: as above.
        more = unsafe { Thread32Next(snapshot.0, &mut entry) } != 0;
    }
    Some(tids)
}

pub(crate) fn thread_count() -> Option<usize> {
    threads().map(|tids| tids.len())
}

pub(crate) fn thread_name(tid: i32) -> Option<String> {
    // SAFETY: plain arguments; the handle is checked, then closed below.
    let thread = unsafe { OpenThread(THREAD_QUERY_LIMITED_INFORMATION, 0, tid as u32) };
    if thread.is_null() {
        return None;
    }
    // An id whose thread ended may name another process's thread now (ids are system-wide).
    // SAFETY: an open handle; closed here when it is not ours.
    if unsafe { GetProcessIdOfThread(thread) != GetCurrentProcessId() } {
        unsafe { CloseHandle(thread) };
        return None;
    }
    let mut text: *mut u16 = std::ptr::null_mut();
    // SAFETY: `thread` is open; on success `text` is a NUL-terminated string we free below.
    let result = unsafe { GetThreadDescription(thread, &mut text) };
    // SAFETY: closing the handle we opened.
    unsafe { CloseHandle(thread) };
    if result < 0 || text.is_null() {
        return None;
    }
    let mut len = 0;
    // SAFETY: NUL-terminated, per GetThreadDescription's contract.
    while unsafe { *text.add(len) } != 0 {
        len += 1;
    }
    // SAFETY: `len` units were just read.
    let name = String::from_utf16_lossy(unsafe { std::slice::from_raw_parts(text, len) });
    // SAFETY: GetThreadDescription allocated it with LocalAlloc.
    unsafe { LocalFree(text as *mut c_void) };
    (!name.is_empty()).then_some(name)
}

pub(crate) fn kernel_wait(tid: i32) -> KernelWait {
    wait::kernel_wait(tid)
}

pub(crate) fn current_tid() -> i32 {
    // SAFETY: no preconditions.
    unsafe { GetCurrentThreadId() as i32 }
}

pub(crate) fn creation_hook() -> Result<(), &'static str> {
    match hook::installed() {
        true => Ok(()),
        false => Err("the executable's import of `CreateThread` could not be hooked"),
    }
}

pub(crate) fn before_main() {
    hook::install();
}

pub(crate) fn children_hooked() -> bool {
    hook::children_installed()
}

/// How [`kill_child`] ends a child, for the report's note.
pub(crate) const KILLED: &str = "terminated (`TerminateProcess`)";

pub(crate) fn process_clock() -> Duration {
    children::clock()
}

pub(crate) fn child_liveness(pid: i32, started: Duration) -> Liveness {
    children::liveness(pid, started)
}

/// Windows has no `/proc` state letter to give.
pub(crate) fn child_stat(_pid: i32) -> Option<ChildStat> {
    None
}

/// Another process's command line is not read: the hook records it at creation.
pub(crate) fn child_cmdline(_pid: i32) -> Vec<String> {
    Vec::new()
}

pub(crate) fn kill_child(pid: i32, started: Option<Duration>, patience: Duration) -> bool {
    children::kill(pid, started, patience)
}

pub(crate) fn child_pids() -> Option<Vec<i32>> {
    let snapshot = Snapshot::take(TH32CS_SNAPPROCESS)?;
    // SAFETY: no preconditions.
    let own = unsafe { GetCurrentProcessId() };
    let mut entry = PROCESSENTRY32W {
        dwSize: size_of::<PROCESSENTRY32W>() as u32,
        ..Default::default()
    };
    let mut pids = Vec::new();
    // SAFETY: `entry` is a valid, sized PROCESSENTRY32W for the whole walk.
    let mut more = unsafe { Process32FirstW(snapshot.0, &mut entry) } != 0;
    while more {
        if entry.th32ParentProcessID == own && entry.th32ProcessID != own {
            pids.push(entry.th32ProcessID as i32);
        }
        // SAFETY: as above.
        more = unsafe { Process32NextW(snapshot.0, &mut entry) } != 0;
    }
    Some(pids)
}

#[cfg(test)]
pub(crate) fn syscall_number(_name: &str) -> Option<i64> {
    None
}

pub(crate) fn at_exit(handler: fn(Option<i32>)) {
    super::at_exit_without_status(handler);
}
