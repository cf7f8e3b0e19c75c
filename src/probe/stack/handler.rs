//! The signal handler that walks its own thread's stack, its installation, and the sender.
//!
//! # Hazards handled
//!
//! - A thread interrupted inside the unwinder is never walked (see [`super::unwinder`]).
//! - The handler saves and restores `errno` and is installed with `SA_RESTART`, so blocking
//!   `read`/`write`/`accept` (on sockets without a timeout), `futex` waits without a timeout and
//!   `wait4` resume transparently. Calls that the kernel never restarts would return `EINTR` to
//!   the interrupted thread (`epoll_wait`, `poll`, `select`, `nanosleep`/`clock_nanosleep`,
//!   `sigtimedwait`, `futex` with a timeout, socket calls with `SO_RCVTIMEO`/`SO_SNDTIMEO`):
//!   [`super::safety`] decides from `/proc`, before sending, whether a thread may be interrupted
//!   at all, and never signals one that blocks or waits for the signal.
//! - The signal is the first real-time one from `SIGRTMIN+3` whose disposition is `SIG_DFL`: a
//!   handler the program installed is never replaced. Each capture checks that ours is still in
//!   place.
//! - Threads that never get scheduled (or start blocking the signal after the look) time out as
//!   [`Captured::NoAnswer`](super::Captured::NoAnswer); the queued signal is then harmless
//!   whenever it arrives.
//! - The handler is installed with `SA_ONSTACK`: on a thread with an alternate signal stack
//!   (std's threads and main thread) it runs there; elsewhere it needs about 4 to 6 KiB below the
//!   interrupted frame, which [`super::safety`] checks before signalling.

use libc::{c_int, c_void};
use std::sync::atomic::Ordering;
use std::sync::OnceLock;

use super::slots::{pack, Slot, ANSWERS, DONE, POOL, REQUESTED, RETRY, SLOTS, SLOT_BITS, WRITING};
use super::unwinder::{in_unwinder, record_unwinder_text, UNWINDER_HITS};

/// The kernel's `siginfo` for `SI_QUEUE` signals, up to the value (the `_rt` member of the union).
#[repr(C)]
struct QueueInfo {
    signo: c_int,
    errno: c_int,
    code: c_int,
    rt: QueueFields,
}

#[repr(C)]
struct QueueFields {
    pid: libc::pid_t,
    uid: libc::uid_t,
    value: *mut c_void,
}

const _: () = assert!(size_of::<QueueInfo>() <= size_of::<libc::siginfo_t>());
const _: () = assert!(align_of::<QueueInfo>() <= align_of::<libc::siginfo_t>());

/// Queues `signo` with `value` to thread `tid` of process `pid`; `Err(errno)` on failure.
pub(super) fn send(signo: c_int, pid: libc::pid_t, tid: i32, value: usize) -> Result<(), c_int> {
    // SAFETY: siginfo_t is plain data, all-zero is a valid value.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    // SAFETY: QueueInfo is a prefix of siginfo_t's layout (asserted size and alignment above) and
    // the reference does not outlive `info`.
    let queue = unsafe { &mut *(&mut info as *mut libc::siginfo_t).cast::<QueueInfo>() };
    queue.signo = signo;
    queue.code = libc::SI_QUEUE;
    queue.rt.pid = pid;
    // SAFETY: getuid has no preconditions.
    queue.rt.uid = unsafe { libc::getuid() };
    queue.rt.value = value as *mut c_void;
    // SAFETY: rt_tgsigqueueinfo reads a full siginfo_t from the pointer, which `info` is.
    let sent = unsafe {
        libc::syscall(
            libc::SYS_rt_tgsigqueueinfo,
            pid,
            tid,
            signo,
            &info as *const libc::siginfo_t,
        )
    };
    match sent {
        0 => Ok(()),
        _ => Err(std::io::Error::last_os_error()
            .raw_os_error()
            .unwrap_or(libc::EINVAL)),
    }
}

/// The signal handler: answers the request named by the signal's value, if it is still current.
extern "C" fn on_signal(_signo: c_int, info: *mut libc::siginfo_t, context: *mut c_void) {
    // SAFETY: __errno_location returns this thread's errno, always valid.
    let errno = unsafe { *libc::__errno_location() };
    // SAFETY: the kernel passes valid siginfo and ucontext pointers to an SA_SIGINFO handler.
    unsafe { answer(&*info, context) };
    // SAFETY: as above; the interrupted code must find errno as it left it.
    unsafe { *libc::__errno_location() = errno };
}

/// The body of [`on_signal`]: async-signal-safe, no allocation, no locks.
///
/// # Safety
///
/// `context` must be the `ucontext_t` the kernel passed to the handler.
unsafe fn answer(info: &libc::siginfo_t, context: *mut c_void) {
    // SAFETY: getpid has no preconditions; si_pid and si_value are valid for SI_QUEUE signals.
    let ours = info.si_code == libc::SI_QUEUE && unsafe { info.si_pid() == libc::getpid() };
    if !ours {
        return;
    }
    // SAFETY: checked above that this is an SI_QUEUE signal, which carries a value.
    let value = unsafe { info.si_value() }.sival_ptr as usize as u64;
    let cell = &POOL[(value & (SLOTS as u64 - 1)) as usize];
    let generation = value >> SLOT_BITS;
    let requested = pack(generation, REQUESTED);
    let writing = pack(generation, WRITING);
    if cell
        .state
        .compare_exchange(requested, writing, Ordering::Acquire, Ordering::Relaxed)
        .is_err()
    {
        return; // late, duplicate or foreign: not ours to answer any more
    }
    // SAFETY: the caller passes the handler's ucontext.
    let pc = unsafe { interrupted_pc(context) };
    cell.pc.store(pc, Ordering::Relaxed);
    let status = if in_unwinder(pc) {
        UNWINDER_HITS.fetch_add(1, Ordering::Relaxed);
        RETRY
    } else {
        // SAFETY: the thread is not inside the unwinder, so the unwinder's state is consistent;
        // the callback stores into atomics only.
        unsafe { walk(cell, pc) };
        DONE
    };
    cell.state.store(pack(generation, status), Ordering::Release);
    ANSWERS.fetch_add(1, Ordering::Release);
    // SAFETY: FUTEX_WAKE on a static aligned u32; the futex syscall is async-signal-safe.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            ANSWERS.as_ptr(),
            libc::FUTEX_WAKE | libc::FUTEX_PRIVATE_FLAG,
            1,
        );
    }
}

/// Unwinds the current (signal handler's) stack into `cell`, keeping frames from `pc` outward.
///
/// # Safety
///
/// Must run on the interrupted thread, which must not be inside the unwinder.
unsafe fn walk(cell: &Slot, pc: usize) {
    let mut len = 0;
    let mut found = false;
    // SAFETY: unsynchronized tracing is what a signal handler can do; see the caller.
    unsafe {
        backtrace::trace_unsynchronized(|frame| {
            let ip = frame.ip() as usize;
            if !found && ip == pc {
                found = true;
                len = 0; // drop the handler's and the trampoline's frames
            }
            match cell.frames.get(len) {
                Some(entry) => {
                    entry.store(ip, Ordering::Relaxed);
                    len += 1;
                    true
                }
                None => false,
            }
        });
    }
    cell.len.store(len, Ordering::Relaxed);
    cell.found.store(found, Ordering::Relaxed);
}

/// Program counter of the interrupted code, from the handler's `ucontext_t`.
///
/// # Safety
///
/// `context` must point to a valid `ucontext_t`.
#[cfg(target_arch = "x86_64")]
unsafe fn interrupted_pc(context: *mut c_void) -> usize {
    // SAFETY: guaranteed by the caller.
    let context = unsafe { &*context.cast::<libc::ucontext_t>() };
    context.uc_mcontext.gregs[libc::REG_RIP as usize] as usize
}

/// Program counter of the interrupted code, from the handler's `ucontext_t`.
///
/// # Safety
///
/// `context` must point to a valid `ucontext_t`.
#[cfg(target_arch = "aarch64")]
unsafe fn interrupted_pc(context: *mut c_void) -> usize {
    // SAFETY: guaranteed by the caller.
    let context = unsafe { &*context.cast::<libc::ucontext_t>() };
    context.uc_mcontext.pc as usize
}

/// Other architectures: never called, [`install`] refuses them first.
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
unsafe fn interrupted_pc(_context: *mut c_void) -> usize {
    0
}

/// The installed signal number, or why capture is impossible; checks ours is still installed.
pub(super) fn installed() -> Result<c_int, &'static str> {
    static INSTALLED: OnceLock<Result<c_int, &'static str>> = OnceLock::new();
    let signo = (*INSTALLED.get_or_init(install))?;
    if handler_of(signo) == Some(handler_address()) {
        Ok(signo)
    } else {
        Err("another handler replaced leakcheck's on its real-time signal")
    }
}

fn handler_address() -> libc::sighandler_t {
    on_signal as extern "C" fn(c_int, *mut libc::siginfo_t, *mut c_void) as libc::sighandler_t
}

/// The current disposition of `signo`, `None` if it cannot be read.
pub(super) fn handler_of(signo: c_int) -> Option<libc::sighandler_t> {
    // SAFETY: sigaction is plain data, all-zero is valid.
    let mut current: libc::sigaction = unsafe { std::mem::zeroed() };
    // SAFETY: a null new action only queries the current one into `current`.
    let queried = unsafe { libc::sigaction(signo, std::ptr::null(), &mut current) };
    (queried == 0).then_some(current.sa_sigaction)
}

/// Records the unwinder's text, then installs the handler on the first free candidate signal.
fn install() -> Result<c_int, &'static str> {
    if !cfg!(any(target_arch = "x86_64", target_arch = "aarch64")) {
        return Err("capturing other threads' stacks is implemented for x86_64 and aarch64 only");
    }
    if cfg!(target_feature = "crt-static") {
        // The unwinder is linked into the executable, where its text cannot be told apart.
        return Err(
            "capturing other threads' stacks is not supported in a static (`+crt-static`) \
                    build: the unwinder's code cannot be located, so a walk could start inside it",
        );
    }
    record_unwinder_text()?;
    for signo in libc::SIGRTMIN() + 3..libc::SIGRTMAX() {
        if handler_of(signo) != Some(libc::SIG_DFL) {
            continue; // the program uses it, or it cannot be read
        }
        // SAFETY: sigaction is plain data, all-zero is valid.
        let mut action: libc::sigaction = unsafe { std::mem::zeroed() };
        action.sa_sigaction = handler_address();
        // SA_ONSTACK: threads with an alternate signal stack (std gives one to the main thread and
        // to every thread it spawns) run the handler there, not on a possibly nearly full stack.
        action.sa_flags = libc::SA_SIGINFO | libc::SA_RESTART | libc::SA_ONSTACK;
        // SAFETY: sa_mask is a valid sigset_t owned by `action`.
        unsafe { libc::sigemptyset(&mut action.sa_mask) };
        // SAFETY: as above.
        let mut previous: libc::sigaction = unsafe { std::mem::zeroed() };
        // SAFETY: both pointers are valid; on_signal is async-signal-safe.
        if unsafe { libc::sigaction(signo, &action, &mut previous) } != 0 {
            continue;
        }
        if previous.sa_sigaction == libc::SIG_DFL {
            return Ok(signo);
        }
        // Another thread installed a handler since we looked: give it back, try the next signal.
        // SAFETY: restores the disposition just read.
        unsafe { libc::sigaction(signo, &previous, std::ptr::null_mut()) };
    }
    Err("no free real-time signal: SIGRTMIN+3 to SIGRTMAX-1 all have handlers")
}
