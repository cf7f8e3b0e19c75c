//! macOS (aarch64 and x86_64). **Compiled and linted for both targets, never run**: there is no
//! Mac in leakcheck's CI. What it relies on is cited from Apple's headers and sources, and its
//! logic that is not a system call (what each thread event does to the lineage registry, the
//! creator-to-thread hand-off, the frame-pointer walk) is shared and tested on Linux.
//!
//! - **Thread ids.** A thread's id is the name of its Mach thread port in this task, as
//!   `task_threads` lists it and as `pthread_mach_thread_np(pthread_self())` gives it to the
//!   thread itself (libpthread keeps that send right for the thread's whole life, and a task has
//!   one name per port, so both agree; the call adds no reference). A 32-bit name, kept bit for
//!   bit in the interface's `i32`; the lineage registry stores the same value, recorded by the
//!   thread when it starts. Like a Linux tid it can be reused after the thread is gone. It is not
//!   the 64-bit system-wide id of `pthread_threadid_np`, which would need a lookup per thread to
//!   reach the port that `thread_info` wants.
//! - **Threads.** [`threads`]: `task_threads(mach_task_self())`; every send right it returns and
//!   the array itself are deallocated. Names ([`thread_name`]) and run states ([`kernel_wait`])
//!   come from `thread_info` on the port: `THREAD_EXTENDED_INFO`'s `pth_name` (what
//!   `pthread_setname_np`, so `std::thread::Builder::name`, sets) and `THREAD_BASIC_INFO`'s
//!   `run_state`. Nothing else of a wait (no system call, no wake-up time) is told here.
//! - **Creation** is hooked with libpthread's introspection hook ([`hook`], which hands each
//!   event to `probe::lineage::events`), installed before `main` from macOS 10.14 on (earlier
//!   releases may send a thread's start before its creation): threads are attributed per test
//!   exactly, as on Linux.
//! - **Children**: `proc_listchildpids(getpid())` (it returns a count of pids, libproc's
//!   `bytes / sizeof(int)`), without zombies (`proc_pidinfo`'s `PROC_PIDTBSDINFO`): the check
//!   reads a child's zombie state from Linux's `/proc` only, so a zombie listed here would fail
//!   the test as a running child. Their creation is not hooked (no interposing here), so checks
//!   compare the process's children before and after, and reports say so.
//! - **Stacks** of other threads: each is suspended, its registers and stack copied, and
//!   resumed; the frame pointers are walked in the copy (`probe::stack`'s `suspend`).

#[path = "macos_hook.rs"]
mod hook;

use std::ffi::{c_char, c_int};

use super::Unseen;
use crate::model::KernelWait;

/// Checks run here with lineage, as on Linux; this part is missing.
pub(crate) const UNSEEN: &[Unseen] = &[Unseen {
    what: "leaked threads' waits",
    why: "macOS tells only a thread's run state: reports do not classify waits, and a check with \
          survivors settles to its deadline",
}];

extern "C" {
    /// `<mach/mach_port.h>`: releases one user reference of a right; not in the `libc` crate.
    fn mach_port_deallocate(task: libc::mach_port_t, name: libc::mach_port_t) -> libc::kern_return_t;
    /// `<mach/mach_init.h>`: this task's port, which the `mach_task_self()` macro reads (the
    /// `libc` crate deprecates its binding, pointing to the `mach2` crate: not worth a
    /// dependency for one word).
    #[link_name = "mach_task_self_"]
    static TASK_SELF: libc::mach_port_t;
}

/// This task's port (`mach_task_self()`).
pub(crate) fn task() -> libc::mach_port_t {
    // SAFETY: set by libSystem before any code of the program runs, never changed.
    unsafe { TASK_SELF }
}

/// The process's thread ports (send rights from `task_threads`), released on drop.
struct ThreadList {
    ports: libc::thread_act_array_t,
    count: libc::mach_msg_type_number_t,
}

impl ThreadList {
    fn take() -> Option<ThreadList> {
        let mut list = ThreadList {
            ports: std::ptr::null_mut(),
            count: 0,
        };
        // SAFETY: valid out pointers; on success the kernel fills both.
        let result = unsafe { libc::task_threads(task(), &mut list.ports, &mut list.count) };
        (result == libc::KERN_SUCCESS).then_some(list)
    }

    fn ports(&self) -> &[libc::thread_act_t] {
        if self.ports.is_null() {
            return &[];
        }
        // SAFETY: `task_threads` returned `count` ports at `ports`, ours until dropped.
        unsafe { std::slice::from_raw_parts(self.ports, self.count as usize) }
    }
}

impl Drop for ThreadList {
    fn drop(&mut self) {
        // SAFETY: each port is a send right `task_threads` gave us, released once; then the
        // array, which the kernel allocated in our address space.
        unsafe {
            for &port in self.ports() {
                mach_port_deallocate(task(), port);
            }
            if !self.ports.is_null() {
                libc::vm_deallocate(
                    task(),
                    self.ports as libc::vm_address_t,
                    self.count as libc::vm_size_t * size_of::<libc::thread_act_t>(),
                );
            }
        }
    }
}

pub(crate) fn threads() -> Option<Vec<i32>> {
    let list = ThreadList::take()?;
    Some(list.ports().iter().map(|&port| port as i32).collect())
}

pub(crate) fn thread_count() -> Option<usize> {
    ThreadList::take().map(|list| list.ports().len())
}

/// `thread_info` of `flavor` into `T`, for the thread whose port name is `tid`.
fn info<T: Default>(tid: i32, flavor: c_int, count: libc::mach_msg_type_number_t) -> Option<T> {
    let mut out = T::default();
    let mut count = count;
    // SAFETY: `out` holds `count` integers of the flavor's structure; a stale or foreign name
    // makes the call fail, not misbehave.
    let result = unsafe {
        libc::thread_info(
            tid as libc::thread_inspect_t,
            flavor as libc::thread_flavor_t,
            (&raw mut out).cast(),
            &mut count,
        )
    };
    (result == libc::KERN_SUCCESS).then_some(out)
}

pub(crate) fn thread_name(tid: i32) -> Option<String> {
    let info: libc::thread_extended_info =
        info(tid, libc::THREAD_EXTENDED_INFO, libc::THREAD_EXTENDED_INFO_COUNT)?;
    let bytes: Vec<u8> = info
        .pth_name
        .iter()
        .take_while(|&&c| c != 0)
        .map(|&c: &c_char| c as u8)
        .collect();
    (!bytes.is_empty()).then(|| String::from_utf8_lossy(&bytes).into_owned())
}

/// The run state as the model's state letter: `R` running, `S` waiting, `D` uninterruptible, `T`
/// stopped (suspended), `Z` halted (XNU reports a terminating thread so); nothing else is told.
pub(crate) fn kernel_wait(tid: i32) -> KernelWait {
    let state = info::<libc::thread_basic_info>(tid, libc::THREAD_BASIC_INFO, libc::THREAD_BASIC_INFO_COUNT)
        .and_then(|info| match info.run_state {
            libc::TH_STATE_RUNNING => Some('R'),
            libc::TH_STATE_WAITING => Some('S'),
            libc::TH_STATE_UNINTERRUPTIBLE => Some('D'),
            libc::TH_STATE_STOPPED => Some('T'),
            libc::TH_STATE_HALTED => Some('Z'),
            _ => None,
        });
    KernelWait {
        state,
        ..KernelWait::default()
    }
}

pub(crate) fn current_tid() -> i32 {
    // SAFETY: no preconditions; the calling thread's own port, no reference added.
    unsafe { libc::pthread_mach_thread_np(libc::pthread_self()) as i32 }
}

pub(crate) fn creation_hook() -> Result<(), &'static str> {
    match hook::installed() {
        true => Ok(()),
        false => Err("libpthread's introspection hook is used from macOS 10.14 on, not on this release"),
    }
}

/// Installs the creation hook where libpthread orders its events (Darwin 18, macOS 10.14, on).
pub(crate) fn before_main() {
    if darwin_major().is_some_and(|major| major >= 18) {
        crate::probe::fork::install_atfork();
        hook::install();
    }
}

/// The kernel's major release (`kern.osrelease`, `"23.4.0"` on macOS 14.4).
fn darwin_major() -> Option<u32> {
    let mut text = [0u8; 32];
    let mut len = text.len();
    // SAFETY: a NUL-terminated name, and a buffer of `len` bytes.
    let result = unsafe {
        libc::sysctlbyname(
            c"kern.osrelease".as_ptr(),
            text.as_mut_ptr().cast(),
            &mut len,
            std::ptr::null_mut(),
            0,
        )
    };
    if result != 0 {
        return None;
    }
    let text = std::str::from_utf8(&text[..len.min(text.len())]).ok()?;
    text.split('.').next()?.trim_end_matches('\0').parse().ok()
}

pub(crate) fn children_hooked() -> bool {
    false
}

pub(crate) fn child_pids() -> Option<Vec<i32>> {
    // SAFETY: no preconditions.
    let own = unsafe { libc::getpid() };
    let mut capacity = 64;
    loop {
        let mut pids: Vec<libc::pid_t> = vec![0; capacity];
        let bytes = (capacity * size_of::<libc::pid_t>()) as c_int;
        // libproc answers 0, not -1, when the call fails (libproc.c's `proc_listpids`): only
        // `errno` tells that from "no children", and a failure must not read as none.
        // SAFETY: `__error` is the calling thread's `errno`; `pids` holds `bytes` bytes, and the
        // call returns how many pids it wrote.
        let count = unsafe {
            *libc::__error() = 0;
            libc::proc_listchildpids(own, pids.as_mut_ptr().cast(), bytes)
        };
        // SAFETY: as above.
        if count == 0 && unsafe { *libc::__error() } != 0 {
            return None;
        }
        let count = usize::try_from(count).ok()?;
        // A full buffer may have cut the list short: ask again with more room.
        if count < capacity {
            pids.truncate(count);
            pids.retain(|&pid| pid > 0 && running(pid));
            return Some(pids);
        }
        capacity = capacity.checked_mul(4).filter(|&more| more <= 1 << 20)?;
    }
}

/// Children are diffed here, never recorded (see `super::unrecorded`).
pub(crate) use super::unrecorded::{
    child_cmdline, child_liveness, child_stat, kill_child, process_clock, KILLED,
};

/// Whether child `pid` still runs: not a zombie (exited, waiting to be reaped), and not reaped
/// since it was listed. `arg` 1 makes the kernel look among zombies too (xnu's `proc_info.c`:
/// with 0, `proc_find` skips them and the call fails).
fn running(pid: libc::pid_t) -> bool {
    // SAFETY: plain integers and arrays, for which zero is a valid value.
    let mut info: libc::proc_bsdinfo = unsafe { std::mem::zeroed() };
    let size = size_of::<libc::proc_bsdinfo>() as c_int;
    // SAFETY: `info` is a `proc_bsdinfo` of `size` bytes.
    let read = unsafe { libc::proc_pidinfo(pid, libc::PROC_PIDTBSDINFO, 1, (&raw mut info).cast(), size) };
    read == size && info.pbi_status != libc::SZOMB
}

#[cfg(test)]
pub(crate) fn syscall_number(_name: &str) -> Option<i64> {
    None
}

pub(crate) fn at_exit(handler: fn(Option<i32>)) {
    super::at_exit_without_status(handler);
}
