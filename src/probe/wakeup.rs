//! When a thread blocked in a system call can wake by itself, read from the call's arguments
//! (`/proc/self/task/<tid>/syscall`) and, for timeouts passed by pointer, from this process's own
//! memory (`process_vm_readv`, which reports a stale address as an error instead of faulting).
//!
//! What std and tokio call on Linux/glibc (measured by `examples/wait_syscalls.rs`):
//! `thread::sleep` is `clock_nanosleep(CLOCK_MONOTONIC, 0, relative)`; `recv`, `park` and
//! `Condvar::wait` are `futex(FUTEX_WAIT_BITSET|PRIVATE)` without a timeout; `recv_timeout`,
//! `park_timeout` and `Condvar::wait_timeout` pass an absolute `CLOCK_MONOTONIC` deadline; a
//! tokio worker that holds the driver parks in `epoll_wait` with the next timer in milliseconds
//! (`-1` for none), the others in `futex(FUTEX_WAIT_PRIVATE)` without a timeout; a blocking
//! `accept` is `accept4` without one.
//!
//! A relative timeout as the kernel shows it is the duration requested when the wait began, not
//! what is left: the caller says how long ago the wait began at most.

use std::time::Duration;

/// When a blocked thread wakes without another thread's or the outside world's doing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Wake {
    /// Only another thread, a signal or an outside event (a peer's packet) can wake it.
    Never,
    /// Not before this long from now (a lower bound).
    After(Duration),
    /// The call or its timeout is not understood: it may wake at any time.
    Unknown,
}

/// When a thread blocked in system call `nr` with `args` can wake by itself, if the wait began at
/// most `began_within` ago.
#[cfg(target_os = "linux")]
#[allow(non_upper_case_globals)] // libc's `SYS_*` names as patterns
pub(crate) fn wake(nr: i64, args: [u64; 6], began_within: Duration) -> Wake {
    use libc::*;
    let relative = |timeout: Option<Duration>| match timeout {
        Some(timeout) => Wake::After(timeout.saturating_sub(began_within)),
        None => Wake::Unknown,
    };
    let by_pointer = |pointer: u64| match pointer {
        0 => Wake::Never,
        pointer => relative(read_timespec(pointer)),
    };
    let millis = |ms: u64| match ms as i32 {
        ..0 => Wake::Never,
        ms => relative(Some(Duration::from_millis(ms as u64))),
    };
    match nr {
        SYS_futex => {
            let (op, timeout) = (args[1], args[3]);
            match (op & 0x7f) as i32 {
                FUTEX_WAIT | FUTEX_WAIT_BITSET if timeout == 0 => Wake::Never,
                FUTEX_WAIT => relative(read_timespec(timeout)),
                FUTEX_WAIT_BITSET => {
                    let clock = if op & FUTEX_CLOCK_REALTIME as u64 != 0 {
                        CLOCK_REALTIME
                    } else {
                        CLOCK_MONOTONIC
                    };
                    absolute(clock, read_timespec(timeout))
                }
                _ => Wake::Unknown,
            }
        }
        SYS_clock_nanosleep if args[1] & TIMER_ABSTIME as u64 != 0 => {
            absolute(args[0] as clockid_t, read_timespec(args[2]))
        }
        SYS_clock_nanosleep => relative(read_timespec(args[2])),
        SYS_nanosleep => relative(read_timespec(args[0])),
        SYS_epoll_pwait if !watches_timer(args[0]) => millis(args[3]),
        SYS_epoll_pwait2 if !watches_timer(args[0]) => by_pointer(args[3]),
        #[cfg(target_arch = "x86_64")]
        SYS_epoll_wait if !watches_timer(args[0]) => millis(args[3]),
        #[cfg(target_arch = "x86_64")]
        SYS_poll => millis(args[2]),
        SYS_ppoll => by_pointer(args[2]),
        SYS_rt_sigtimedwait => by_pointer(args[2]),
        SYS_rt_sigsuspend => Wake::Never,
        #[cfg(target_arch = "x86_64")]
        SYS_pause => Wake::Never,
        SYS_accept | SYS_accept4 | SYS_read | SYS_readv | SYS_recvfrom | SYS_recvmsg => read_wake(args[0]),
        _ => Wake::Unknown,
    }
}

#[cfg(not(target_os = "linux"))]
pub(crate) fn wake(_nr: i64, _args: [u64; 6], _began_within: Duration) -> Wake {
    Wake::Unknown
}

/// A blocking read or accept on `fd`: a pipe, eventfd or signalfd waits for a writer; a socket
/// too, unless it has a receive timeout (`SO_RCVTIMEO`). Anything else (a timerfd, a file) may
/// wake by itself.
#[cfg(target_os = "linux")]
fn read_wake(fd: u64) -> Wake {
    let Ok(target) = std::fs::read_link(format!("/proc/self/fd/{fd}")) else {
        return Wake::Unknown;
    };
    let target = target.to_string_lossy();
    if target.starts_with("pipe:") || target == "anon_inode:[eventfd]" || target == "anon_inode:[signalfd]" {
        return Wake::Never;
    }
    if !target.starts_with("socket:") {
        return Wake::Unknown;
    }
    let mut timeout = libc::timeval {
        tv_sec: 0,
        tv_usec: 0,
    };
    let mut len = size_of::<libc::timeval>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into `timeout`; a descriptor closed or reused
    // meanwhile gives an error or another socket's value, which the next reading would show.
    let read = unsafe {
        libc::getsockopt(
            fd as i32,
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&mut timeout as *mut libc::timeval).cast(),
            &mut len,
        )
    };
    match (read, timeout.tv_sec, timeout.tv_usec) {
        (0, 0, 0) => Wake::Never,
        // A receive timeout: as for a relative timeout, but the start of the wait is not passed
        // down here, so it may be due at any time.
        _ => Wake::Unknown,
    }
}

/// Whether the epoll set `epfd` watches a timerfd (a timeout the call's arguments do not show).
#[cfg(target_os = "linux")]
fn watches_timer(epfd: u64) -> bool {
    super::procfs::epoll_targets(epfd).into_iter().any(|fd| {
        std::fs::read_link(format!("/proc/self/fd/{fd}"))
            .map_or(true, |target| target.to_string_lossy() == "anon_inode:[timerfd]")
    })
}

/// An absolute deadline on `clock`: how long until it is due.
#[cfg(target_os = "linux")]
fn absolute(clock: libc::clockid_t, deadline: Option<Duration>) -> Wake {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes the current time of `clock` into `now`.
    if deadline.is_none() || unsafe { libc::clock_gettime(clock, &mut now) } != 0 {
        return Wake::Unknown;
    }
    let now = Duration::new(now.tv_sec as u64, now.tv_nsec as u32);
    Wake::After(deadline.unwrap_or_default().saturating_sub(now))
}

/// The `struct timespec` at `address` in this process's memory.
#[cfg(target_os = "linux")]
fn read_timespec(address: u64) -> Option<Duration> {
    let mut value = [0i64; 2];
    let local = libc::iovec {
        iov_base: value.as_mut_ptr().cast(),
        iov_len: size_of_val(&value),
    };
    let remote = libc::iovec {
        iov_base: address as *mut libc::c_void,
        iov_len: size_of_val(&value),
    };
    // SAFETY: process_vm_readv on our own process copies into `value` and reports a bad address
    // as an error instead of faulting.
    let read = unsafe { libc::process_vm_readv(libc::getpid(), &local, 1, &remote, 1, 0) };
    let [seconds, nanos] = value;
    (read == size_of_val(&value) as isize && seconds >= 0 && (0..1_000_000_000).contains(&nanos))
        .then(|| Duration::new(seconds as u64, nanos as u32))
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    /// Timeouts are read from memory: relative ones less the time already waited, absolute ones
    /// against their clock; no timeout is `Never`; an unreadable pointer is `Unknown`.
    #[test]
    fn reads_timeouts() {
        let thirty = libc::timespec {
            tv_sec: 30,
            tv_nsec: 0,
        };
        let at = &thirty as *const libc::timespec as u64;
        let sleep = wake(
            libc::SYS_clock_nanosleep,
            [1, 0, at, at, 0, 0],
            Duration::from_secs(1),
        );
        assert_eq!(sleep, Wake::After(Duration::from_secs(29)));
        let futex = |op: u64, timeout: u64| wake(libc::SYS_futex, [1, op, 0, timeout, 0, 0], Duration::ZERO);
        assert_eq!(futex(0x89, 0), Wake::Never);
        assert_eq!(futex(0x80, at), Wake::After(Duration::from_secs(30)));
        assert_eq!(futex(0x80, 8), Wake::Unknown, "an unmapped address");
        // An absolute CLOCK_MONOTONIC deadline 30 s from now.
        let mut now = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) };
        let deadline = libc::timespec {
            tv_sec: now.tv_sec + 30,
            ..now
        };
        let Wake::After(left) = futex(0x89, &deadline as *const libc::timespec as u64) else {
            panic!("an absolute deadline is read");
        };
        assert!(left > Duration::from_secs(29) && left <= Duration::from_secs(30));
        assert_eq!(futex(6, 0), Wake::Unknown, "FUTEX_LOCK_PI is not read");
        assert_eq!(
            wake(libc::SYS_ppoll, [0, 0, 0, 0, 0, 0], Duration::ZERO),
            Wake::Never
        );
        assert_eq!(wake(libc::SYS_wait4, [0; 6], Duration::ZERO), Wake::Unknown);
    }

    /// A read on a pipe waits for a writer; on a socket with a receive timeout it may wake.
    #[test]
    fn reads_descriptors() {
        let mut fds = [0; 2];
        assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
        assert_eq!(read_wake(fds[0] as u64), Wake::Never);
        unsafe { libc::close(fds[0]) };
        unsafe { libc::close(fds[1]) };
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let fd = std::os::fd::AsRawFd::as_raw_fd(&socket) as u64;
        assert_eq!(read_wake(fd), Wake::Never);
        socket.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        assert_eq!(read_wake(fd), Wake::Unknown);
    }
}
