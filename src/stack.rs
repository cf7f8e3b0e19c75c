//! Current stacks of other threads of this process, and what the kernel says they wait on.
//!
//! # Design
//!
//! A report is only useful if it shows where a leaked thread is stuck *now*, not just where it was
//! created. Another thread's stack cannot be read safely from the outside (its registers are not
//! ours), so [`capture`] asks each thread to walk its own stack: on Linux with glibc it sends a
//! real-time signal whose handler unwinds into a static buffer (see [`linux`]). Everything that can
//! go wrong on the other side (signals blocked, the thread exiting, the thread sitting inside the
//! unwinder) ends in a [`Captured`] variant, never in a hang or a crash.
//!
//! [`kernel_wait`] needs no signal: it reads what the kernel publishes under `/proc`, which is
//! enough to tell "blocked on a futex" from "busy" even where no stack can be captured.
//!
//! Capture can be turned off with `LEAKCHECK_STACKS=off` (for programs that own every real-time
//! signal, or to rule leakcheck out while debugging).

use std::ffi::OsStr;
use std::sync::OnceLock;
use std::time::Duration;

#[cfg(all(target_os = "linux", target_env = "gnu"))]
mod linux;
#[cfg(all(target_os = "linux", target_env = "gnu"))]
use linux as imp;

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
mod other;
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
use other as imp;

/// Name of the environment variable that turns stack capture on or off.
const SWITCH_VAR: &str = "LEAKCHECK_STACKS";

/// What [`capture`] learned about one thread.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Captured {
    /// Raw instruction pointers, innermost first, signal-handler frames stripped. All are
    /// return-address-like, for [`crate::frames::resolve`]: the first is the interrupted pc + 1.
    Frames(Vec<usize>),
    /// The thread did not answer in time (signals blocked, stuck inside the unwinder, ...).
    NoAnswer,
    /// No thread with that id exists (any more).
    Exited,
    /// This platform or build cannot capture other threads' stacks; the text says why.
    Unsupported(&'static str),
    /// Capture is turned off (`LEAKCHECK_STACKS=off`).
    Disabled,
}

/// Captures the current stack of each thread in `tids` (kernel thread ids of this process).
///
/// Returns one [`Captured`] per tid, in the same order. The calling thread's own stack is
/// captured directly. Each thread gets `timeout` from the moment it is asked; at most 64 are
/// asked at once, so a call lasts at most about `timeout * ceil(tids.len() / 64)`.
/// Calls are serialized process-wide.
pub(crate) fn capture(tids: &[i32], timeout: Duration) -> Vec<Captured> {
    if !enabled() {
        return vec![Captured::Disabled; tids.len()];
    }
    imp::capture(tids, timeout)
}

/// Whether stack capture is on: `LEAKCHECK_STACKS` unset or `on`/`1`/`true` (read once).
///
/// An unrecognized value leaves capture on; [`env_error`] describes it.
pub(crate) fn enabled() -> bool {
    switch().0
}

/// A message naming `LEAKCHECK_STACKS` and its valid forms if its value is not one of them.
pub(crate) fn env_error() -> Option<String> {
    switch().1.clone()
}

/// The parsed switch: (enabled, complaint about the value), read once per process.
fn switch() -> &'static (bool, Option<String>) {
    static SWITCH: OnceLock<(bool, Option<String>)> = OnceLock::new();
    SWITCH.get_or_init(|| parse_switch(std::env::var_os(SWITCH_VAR).as_deref()))
}

/// Parses the value of `LEAKCHECK_STACKS`; anything unrecognized means on, with a complaint.
fn parse_switch(value: Option<&OsStr>) -> (bool, Option<String>) {
    let Some(value) = value else {
        return (true, None);
    };
    match value.to_str().map(|v| v.trim().to_ascii_lowercase()).as_deref() {
        Some("" | "on" | "1" | "true") => (true, None),
        Some("off" | "0" | "false") => (false, None),
        _ => (
            true,
            Some(format!(
                "leakcheck: invalid value {value:?} for `{SWITCH_VAR}`: expected `on`, `1`, `true`, \
                 `off`, `0` or `false`; stack capture stays on"
            )),
        ),
    }
}

/// What the kernel says a thread is doing, from `/proc/self/task/<tid>/`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct KernelWait {
    /// Scheduler state (`R` running, `S` sleeping, `D` uninterruptible, `T` stopped, ...).
    pub(crate) state: Option<char>,
    /// Kernel function the thread sleeps in, when the kernel discloses it.
    pub(crate) wchan: Option<String>,
    /// The system call it is blocked in (`futex`, `clock_nanosleep`, `syscall 42`, ...),
    /// `running` if it is not blocked.
    pub(crate) syscall: Option<String>,
}

/// Reads what the kernel says thread `tid` of this process is waiting on; unknown parts are `None`.
pub(crate) fn kernel_wait(tid: i32) -> KernelWait {
    #[cfg(target_os = "linux")]
    {
        let read = |file: &str| std::fs::read_to_string(format!("/proc/self/task/{tid}/{file}")).ok();
        KernelWait {
            state: read("stat").as_deref().and_then(parse_stat_state),
            wchan: read("wchan").as_deref().and_then(parse_wchan),
            syscall: read("syscall").as_deref().and_then(parse_syscall),
        }
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = tid;
        KernelWait::default()
    }
}

/// Field 3 of `stat`; the command name before it may itself contain spaces and parentheses.
fn parse_stat_state(stat: &str) -> Option<char> {
    let after_name = &stat[stat.rfind(')')? + 1..];
    after_name.trim_start().chars().next()
}

/// The kernel writes `0` when the thread is not sleeping or the symbol is hidden.
fn parse_wchan(wchan: &str) -> Option<String> {
    let wchan = wchan.trim();
    (!wchan.is_empty() && wchan != "0").then(|| wchan.to_owned())
}

/// First field of `syscall`: a number, `running`, or `-1` (blocked outside any system call).
fn parse_syscall(line: &str) -> Option<String> {
    let first = line.split_whitespace().next()?;
    if first == "running" {
        return Some(first.to_owned());
    }
    let nr: i64 = first.parse().ok()?;
    if nr < 0 {
        return None;
    }
    Some(match syscall_name(nr) {
        Some(name) => name.to_owned(),
        None => format!("syscall {nr}"),
    })
}

/// Names of the system calls a blocked thread usually sits in.
#[cfg(target_os = "linux")]
fn syscall_name(nr: i64) -> Option<&'static str> {
    use libc::*;
    #[cfg(target_arch = "x86_64")]
    let legacy: &[(c_long, &str)] = &[
        (SYS_epoll_wait, "epoll_wait"),
        (SYS_poll, "poll"),
        (SYS_select, "select"),
        (SYS_pause, "pause"),
    ];
    #[cfg(not(target_arch = "x86_64"))]
    let legacy: &[(c_long, &str)] = &[];
    let common: &[(c_long, &str)] = &[
        (SYS_futex, "futex"),
        (SYS_nanosleep, "nanosleep"),
        (SYS_clock_nanosleep, "clock_nanosleep"),
        (SYS_read, "read"),
        (SYS_write, "write"),
        (SYS_epoll_pwait, "epoll_pwait"),
        (SYS_epoll_pwait2, "epoll_pwait2"),
        (SYS_ppoll, "ppoll"),
        (SYS_pselect6, "pselect6"),
        (SYS_accept, "accept"),
        (SYS_accept4, "accept4"),
        (SYS_recvfrom, "recvfrom"),
        (SYS_recvmsg, "recvmsg"),
        (SYS_connect, "connect"),
        (SYS_wait4, "wait4"),
        (SYS_waitid, "waitid"),
        (SYS_rt_sigtimedwait, "rt_sigtimedwait"),
    ];
    common
        .iter()
        .chain(legacy)
        .find(|(number, _)| *number == nr)
        .map(|(_, name)| *name)
}

#[cfg(not(target_os = "linux"))]
fn syscall_name(_nr: i64) -> Option<&'static str> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The switch accepts the documented spellings and complains, naming the variable, otherwise.
    #[test]
    fn switch_values() {
        let parse = |v: &str| parse_switch(Some(OsStr::new(v)));
        assert_eq!(parse_switch(None), (true, None));
        for on in ["on", "1", "true", "TRUE", " On "] {
            assert_eq!(parse(on), (true, None), "{on}");
        }
        for off in ["off", "0", "false", "OFF"] {
            assert_eq!(parse(off), (false, None), "{off}");
        }
        let (on, complaint) = parse("nope");
        assert!(on);
        let complaint = complaint.unwrap();
        assert!(complaint.contains("LEAKCHECK_STACKS") && complaint.contains("\"nope\""));
        assert!(complaint.contains("`off`"));
    }

    /// `/proc` parsing copes with odd thread names, hidden wait channels and unknown syscalls.
    #[test]
    #[cfg(target_os = "linux")]
    fn proc_parsing() {
        assert_eq!(parse_stat_state("42 (a) b (c)) S 1 2 3"), Some('S'));
        assert_eq!(parse_stat_state("42 (tokio-rt) R 1"), Some('R'));
        assert_eq!(parse_stat_state("garbage"), None);
        assert_eq!(parse_wchan("0"), None);
        assert_eq!(parse_wchan(""), None);
        assert_eq!(
            parse_wchan("futex_wait_queue\n").as_deref(),
            Some("futex_wait_queue")
        );
        assert_eq!(parse_syscall("running\n").as_deref(), Some("running"));
        assert_eq!(parse_syscall("-1 0x7ffd 0x1\n"), None);
        let futex = format!("{} 0x7f 0x80 0x2 0x0", libc::SYS_futex);
        assert_eq!(parse_syscall(&futex).as_deref(), Some("futex"));
        assert_eq!(parse_syscall("9999 0x1").as_deref(), Some("syscall 9999"));
    }
}
