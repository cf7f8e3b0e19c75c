//! The interposed process-creating entry points (Linux, glibc, dynamically linked).
//!
//! Measured on this platform: `std::process::Command` calls `posix_spawnp` (also for `output`,
//! `status`, `current_dir`, `process_group` and piped handles), and `fork` then `execvp` when it
//! cannot use `posix_spawn` (`pre_exec`, `uid`/`gid`, a changed `PATH` with a bare program name);
//! `tokio::process` calls `posix_spawnp`. Nothing on stable std calls `clone`, `vfork` or `clone3`
//! directly; `pidfd_spawn(p)` is deliberately not defined (std looks it up weakly and would use
//! ours). glibc's `system` and `popen` call its internal `__posix_spawn`: not seen.
//!
//! In the child of a `fork` of a multithreaded process only async-signal-safe code may run, so the
//! creation backtrace is captured into a stack array *before* forking, and only the parent
//! records. leakcheck's locks are held across the fork and reset in the child (`probe::fork`).

use std::sync::atomic::{AtomicUsize, Ordering};

use libc::{c_char, c_int, pid_t, posix_spawn_file_actions_t, posix_spawnattr_t};

use crate::probe::lineage::CREATION_FRAMES;

type SpawnFn = unsafe extern "C" fn(
    *mut pid_t,
    *const c_char,
    *const posix_spawn_file_actions_t,
    *const posix_spawnattr_t,
    *const *mut c_char,
    *const *mut c_char,
) -> c_int;
type ForkFn = unsafe extern "C" fn() -> pid_t;

static REAL_SPAWN: AtomicUsize = AtomicUsize::new(0);
static REAL_SPAWNP: AtomicUsize = AtomicUsize::new(0);
static REAL_FORK: AtomicUsize = AtomicUsize::new(0);

fn resolve(slot: &AtomicUsize, name: &std::ffi::CStr) -> usize {
    let mut address = slot.load(Ordering::Acquire);
    if address == 0 {
        // SAFETY: the name is a valid C string; RTLD_NEXT finds the next definition after ours.
        address = unsafe { libc::dlsym(libc::RTLD_NEXT, name.as_ptr()) } as usize;
        slot.store(address, Ordering::Release);
    }
    address
}

/// Resolves the real functions (before `main`, by `probe::startup`: `dlsym` takes locks, which a
/// forked child must never do).
pub(crate) fn resolve_all() {
    resolve(&REAL_SPAWN, c"posix_spawn");
    resolve(&REAL_SPAWNP, c"posix_spawnp");
    resolve(&REAL_FORK, c"fork");
}

fn real_spawn(slot: &AtomicUsize, name: &std::ffi::CStr) -> Option<SpawnFn> {
    let address = resolve(slot, name);
    // SAFETY: a non-null result of dlsym for a `posix_spawn*` name is that function.
    (address != 0).then(|| unsafe { std::mem::transmute::<usize, SpawnFn>(address) })
}

/// A creation backtrace on the stack: no allocation.
struct Ips {
    len: usize,
    ips: [usize; CREATION_FRAMES],
}

#[inline(always)]
fn capture() -> Ips {
    let mut ips = Ips {
        len: 0,
        ips: [0; CREATION_FRAMES],
    };
    // In the parent, before any fork: the fast unwinder may allocate on its first sight of an
    // address, which is fine here and never happens in the child.
    ips.len = crate::probe::unwind::trace(&mut ips.ips);
    ips
}

/// Records a child; a panic (which would abort in an `extern "C"` function) loses the record,
/// never the spawn.
fn record(pid: pid_t, ips: &[usize], argv: Vec<String>, via: &'static str) {
    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        super::record(pid, ips, argv, crate::probe::sys::process_clock(), via)
    }));
}

/// Shared body of `posix_spawn` and `posix_spawnp`: `forward` calls the real function with the
/// pid out-parameter it is given.
///
/// # Safety
///
/// `argv` is the caller's argument vector (the contract of `posix_spawn(3)`).
unsafe fn spawn(
    via: &'static str,
    pid: *mut pid_t,
    argv: *const *mut c_char,
    forward: impl FnOnce(*mut pid_t) -> c_int,
) -> c_int {
    let ips = capture();
    // The caller may pass a null `pid`; we need it to record the child.
    let mut own: pid_t = 0;
    let out = if pid.is_null() {
        &mut own as *mut pid_t
    } else {
        pid
    };
    let result = forward(out);
    if result == 0 {
        // SAFETY: `out` was written by a successful spawn; `argv` follows the caller's contract.
        let (child, args) = unsafe { (*out, super::copy_argv(argv)) };
        record(child, &ips.ips[..ips.len], args, via);
    }
    result
}

/// Interposes libc's `posix_spawn`; see the module docs.
///
/// # Safety
///
/// The contract of `posix_spawn(3)`.
#[no_mangle]
pub unsafe extern "C" fn posix_spawn(
    pid: *mut pid_t,
    path: *const c_char,
    actions: *const posix_spawn_file_actions_t,
    attr: *const posix_spawnattr_t,
    argv: *const *mut c_char,
    envp: *const *mut c_char,
) -> c_int {
    let Some(real) = real_spawn(&REAL_SPAWN, c"posix_spawn") else {
        return libc::ENOSYS;
    };
    // SAFETY: forwarding the caller's arguments, under the caller's contract.
    unsafe {
        spawn("posix_spawn", pid, argv, |out| {
            real(out, path, actions, attr, argv, envp)
        })
    }
}

/// Interposes libc's `posix_spawnp`; see the module docs.
///
/// # Safety
///
/// The contract of `posix_spawnp(3)`.
#[no_mangle]
pub unsafe extern "C" fn posix_spawnp(
    pid: *mut pid_t,
    file: *const c_char,
    actions: *const posix_spawn_file_actions_t,
    attr: *const posix_spawnattr_t,
    argv: *const *mut c_char,
    envp: *const *mut c_char,
) -> c_int {
    let Some(real) = real_spawn(&REAL_SPAWNP, c"posix_spawnp") else {
        return libc::ENOSYS;
    };
    // SAFETY: forwarding the caller's arguments, under the caller's contract.
    unsafe {
        spawn("posix_spawnp", pid, argv, |out| {
            real(out, file, actions, attr, argv, envp)
        })
    }
}

/// Interposes libc's `fork`; see the module docs.
///
/// # Safety
///
/// The contract of `fork(2)`.
#[no_mangle]
pub unsafe extern "C" fn fork() -> pid_t {
    let address = REAL_FORK.load(Ordering::Acquire);
    let address = if address == 0 {
        resolve(&REAL_FORK, c"fork")
    } else {
        address
    };
    if address == 0 {
        // SAFETY: setting errno is always allowed.
        unsafe { *libc::__errno_location() = libc::ENOSYS };
        return -1;
    }
    // SAFETY: a non-null result of dlsym for `fork` is that function.
    let real = unsafe { std::mem::transmute::<usize, ForkFn>(address) };
    let ips = capture();
    let held = crate::probe::fork::hold();
    // SAFETY: forwarding.
    let pid = unsafe { real() };
    if pid == 0 {
        // The child: the registries reset to its one thread, the locks released; no allocation,
        // TLS initialization or dlsym.
        held.in_child();
        return 0;
    }
    drop(held);
    if pid > 0 {
        record(pid, &ips.ips[..ips.len], Vec::new(), "fork");
    }
    pid
}

/// Interposes libc's `vfork` as `fork`, which POSIX allows: a wrapper cannot share the parent's
/// stack with a `vfork` child (the child would return through our frame and clobber it).
///
/// # Safety
///
/// The contract of `vfork(2)`, which `fork` satisfies.
#[no_mangle]
pub unsafe extern "C" fn vfork() -> pid_t {
    // SAFETY: the caller's contract.
    unsafe { fork() }
}
