//! Whether a thread may be sent the capture signal, decided from `/proc` before sending it.
//!
//! Capture must change nothing that the check does not fail. Three hazards, each decided by an
//! experiment on the kernel's behaviour:
//!
//! - **Taking a signal the program waits for.** A thread that blocks every signal and collects
//!   them with `sigtimedwait` receives a queued real-time signal as data; the handler never runs.
//!   A thread that blocks the capture signal (`SigBlk` in its `status`; this covers `signalfd`
//!   readers, which must block what they read) or waits for it (the set passed to
//!   `rt_sigtimedwait`, read from our own memory: the kernel unblocks the waited set, so `SigBlk`
//!   does not show it) is never signalled, whatever the policy.
//! - **A visible `EINTR`.** With `SA_RESTART`, the kernel restarts `read`/`write`/`recv`/`send`/
//!   `accept` on pipes, files and sockets *without* `SO_RCVTIMEO`/`SO_SNDTIMEO`, `futex` waits
//!   without a timeout and `wait4`/`waitid`. It does not restart socket calls with a timeout
//!   (std's `TcpStream::read` then returns `Err(Interrupted)`), `futex` with a timeout,
//!   `nanosleep`/`clock_nanosleep`, `epoll_wait`, `poll`, `select`, `sigtimedwait`, `pause`.
//!   Under [`Policy::Transparent`] only threads blocked in a restarted call are signalled; a
//!   thread in any other call, or running (it could enter one before the signal lands), is not.
//! - **Overflowing a small stack.** The handler and the unwinder need about 4 to 6 KiB below the
//!   interrupted frame. The handler is installed with `SA_ONSTACK`, so threads with an alternate
//!   signal stack (std installs one on the main thread and on every thread it spawns) run it
//!   there; for the others, a thread whose stack pointer is less than [`STACK_MARGIN`] above the
//!   low end of its stack mapping is not signalled.
//!
//! The decision is a snapshot: a thread that wakes and enters a visible call between the look and
//! the signal (microseconds) can still see `EINTR`. The call and the mask are each read twice,
//! interleaved, so a `sigtimedwait` loop is caught whichever side of the call each read lands on.

use super::Policy;
use crate::probe::procfs::{self, SyscallState};

/// Least stack left below a blocked thread's stack pointer for the handler to run there.
pub(super) const STACK_MARGIN: usize = 16 * 1024;

/// Why a thread is not signalled now.
#[derive(Debug)]
pub(super) enum Refusal {
    /// Not in this capture; the text says why.
    Never(String),
    /// Not yet: look again a little later.
    Later,
}

/// What a capture learns once and uses for every thread it asks.
pub(super) struct Look {
    pub(super) signo: libc::c_int,
    pub(super) policy: Policy,
    pub(super) pid: libc::pid_t,
    mappings: Option<Vec<(usize, usize)>>,
}

impl Look {
    pub(super) fn new(signo: libc::c_int, policy: Policy, pid: libc::pid_t) -> Look {
        Look {
            signo,
            policy,
            pid,
            mappings: None,
        }
    }

    /// `Ok` if `tid` may be signalled now, else why not (for "not interrupted: {why}"), or
    /// [`Refusal::Later`] to look again.
    ///
    /// Reads the call, the signal mask, the call again and the mask again: a thread that blocks
    /// the signal except inside `sigtimedwait` shows it unblocked only while in that call, so a
    /// single pair of reads could see "not in the call" and then "unblocked" as it re-enters.
    /// A thread that is runnable shows `running` even inside the kernel (just woken from
    /// `sigtimedwait`, its mask not yet restored, waiting for a CPU), so while `patient`, a
    /// running thread is looked at again later rather than signalled: a `sigtimedwait` loop is
    /// soon seen sleeping in the call or running with the signal blocked.
    pub(super) fn may_signal(&mut self, tid: i32, patient: bool) -> Result<(), Refusal> {
        let mut running = false;
        for _ in 0..2 {
            let state = procfs::syscall_state(tid);
            running |= state == Some(SyscallState::Running);
            self.check_state(tid, state).map_err(Refusal::Never)?;
            if procfs::blocked_signals(tid).is_some_and(|blocked| blocked & self.bit() != 0) {
                return Err(Refusal::Never(
                    "it blocks the capture signal, which would stay pending for it (or reach its \
                     `sigwait`/`signalfd`)"
                        .into(),
                ));
            }
        }
        if running && patient {
            return Err(Refusal::Later);
        }
        Ok(())
    }

    /// The capture signal's bit in a kernel signal mask.
    fn bit(&self) -> u64 {
        1u64 << (self.signo - 1)
    }

    /// What the thread's current call (or its absence) allows under the policy.
    fn check_state(&mut self, tid: i32, state: Option<SyscallState>) -> Result<(), String> {
        if let Some(state) = state {
            // Unreadable: assume it waits for every signal.
            if procfs::sigtimedwait_set(state).is_some_and(|set| set.unwrap_or(u64::MAX) & self.bit() != 0) {
                return Err(
                    "it waits for signals with `sigtimedwait`/`sigwaitinfo`, and would take the \
                     capture signal as its own"
                        .into(),
                );
            }
        }
        match state {
            Some(SyscallState::Running) if self.policy == Policy::Transparent => Err(
                "it was running, and could enter a call whose interruption it would see (`EINTR`) \
                 before the signal arrives"
                    .into(),
            ),
            Some(SyscallState::InCall { nr, args, sp }) => {
                if self.policy == Policy::Transparent {
                    if let Some(why) = visible_interruption(nr, &args) {
                        return Err(why);
                    }
                }
                if tid != self.pid {
                    self.check_stack(sp)?;
                }
                Ok(())
            }
            None if self.policy == Policy::Transparent => Err(
                "its state could not be read from `/proc`, so it is not known to be safe to \
                 interrupt"
                    .into(),
            ),
            // Gone (the send tells), or outside any call (nothing to interrupt).
            _ => Ok(()),
        }
    }

    /// Refuses a stack pointer less than [`STACK_MARGIN`] above the low end of its mapping.
    fn check_stack(&mut self, sp: usize) -> Result<(), String> {
        let mappings = self.mappings.get_or_insert_with(procfs::writable_mappings);
        // Sorted and disjoint: the candidate is the last mapping starting at or below `sp`.
        let index = mappings.partition_point(|(start, _)| *start <= sp);
        let containing = index
            .checked_sub(1)
            .map(|i| mappings[i])
            .filter(|(_, end)| sp < *end);
        let below = match containing {
            Some((start, _)) => sp - start,
            None if mappings.is_empty() => return Ok(()), // no /proc/self/maps: cannot tell
            None => 0,
        };
        if below >= STACK_MARGIN {
            return Ok(());
        }
        Err(format!(
            "only {below} bytes of its stack are left below where it is blocked, and the capture \
             handler needs up to {STACK_MARGIN} (a thread with an alternate signal stack would not, \
             but that cannot be seen from outside)"
        ))
    }
}

/// Why interrupting system call `nr` would show (`EINTR`, a short sleep), or `None` if the kernel
/// restarts it transparently under `SA_RESTART`.
fn visible_interruption(nr: i64, args: &[usize; 6]) -> Option<String> {
    use libc::*;
    let name = || procfs::syscall_label(nr);
    let not_restarted = |what: &str| {
        Some(format!(
            "it is blocked in `{}`{what}, which would return EINTR to the program",
            name()
        ))
    };
    let io = [
        SYS_read,
        SYS_readv,
        SYS_pread64,
        SYS_write,
        SYS_writev,
        SYS_pwrite64,
        SYS_recvfrom,
        SYS_recvmsg,
        SYS_sendto,
        SYS_sendmsg,
        SYS_accept,
        SYS_accept4,
    ];
    if nr == SYS_futex {
        // A timeout is what makes the kernel report EINTR instead of restarting the wait.
        (args[3] != 0).then(|| {
            "it is blocked in `futex` with a timeout, which would return EINTR to a caller that \
             does not retry"
                .to_string()
        })
    } else if io.contains(&nr) {
        match socket_timeout(args[0] as c_int) {
            Ok(false) => None,
            Ok(true) => not_restarted(" on a socket with a receive or send timeout"),
            Err(()) => not_restarted(" on a descriptor that could not be inspected"),
        }
    } else if nr == SYS_wait4 || nr == SYS_waitid {
        None
    } else {
        not_restarted("")
    }
}

/// Whether `fd` is a socket with `SO_RCVTIMEO` or `SO_SNDTIMEO` set; `Ok(false)` for any other
/// open descriptor, `Err` if it cannot be told (closed meanwhile).
fn socket_timeout(fd: libc::c_int) -> Result<bool, ()> {
    for option in [libc::SO_RCVTIMEO, libc::SO_SNDTIMEO] {
        // SAFETY: timeval is plain data.
        let mut value: libc::timeval = unsafe { std::mem::zeroed() };
        let mut len = size_of::<libc::timeval>() as libc::socklen_t;
        // SAFETY: getsockopt writes at most `len` bytes into `value`; the descriptor is only
        // queried, and a stale one fails with EBADF or ENOTSOCK.
        let got = unsafe {
            libc::getsockopt(
                fd,
                libc::SOL_SOCKET,
                option,
                (&mut value as *mut libc::timeval).cast(),
                &mut len,
            )
        };
        if got != 0 {
            return match std::io::Error::last_os_error().raw_os_error() {
                Some(libc::ENOTSOCK) => Ok(false),
                _ => Err(()),
            };
        }
        if value.tv_sec != 0 || value.tv_usec != 0 {
            return Ok(true);
        }
    }
    Ok(false)
}
