//! Current stacks of other threads of this process.
//!
//! # Design
//!
//! A report is only useful if it shows where a leaked thread is stuck *now*, not just where it was
//! created. Another thread's stack cannot be read safely from the outside (its registers are not
//! ours), so [`capture`] asks each thread to walk its own stack: on Linux with glibc it sends a
//! real-time signal whose handler unwinds into a static buffer. Everything that can go wrong on
//! the other side (signals blocked, the thread exiting, the thread sitting inside the unwinder)
//! ends in a [`Captured`] variant, never in a hang or a crash.
//!
//! The Linux implementation is split by concern:
//!
//! - [`slots`]: the static request/answer cells shared by the capturer and the handler;
//! - [`protocol`]: the capturer's side (claim a slot, signal, wait, retry, give up);
//! - [`handler`]: the signal handler and its installation, the signal sender;
//! - [`unwinder`]: the text ranges of the unwinder and loader, where a walk must not start.
//!
//! - [`safety`]: whether a thread may be signalled at all, decided from `/proc` under a
//!   [`Policy`] (no visible `EINTR`, no signal taken by a `sigwait`er, no overflowed stack).
//!
//! macOS suspends each thread instead, copies its registers and stack, resumes it, and walks the
//! frame pointers in the copy (`suspend`, `frame_pointers`).
//!
//! On Windows x86_64, `windows` suspends each thread for a moment, copies its registers and
//! stack (`copy`) and unwinds the copy once the thread runs again (its module docs say why in
//! that order).
//!
//! Capture can be turned off with `LEAKCHECK_STACKS=off` (for programs that own every real-time
//! signal, or to rule leakcheck out while debugging).

use std::time::Duration;

#[cfg(all(target_os = "linux", target_env = "gnu"))]
mod handler;
#[cfg(all(target_os = "linux", target_env = "gnu"))]
mod protocol;
#[cfg(all(target_os = "linux", target_env = "gnu"))]
mod safety;
#[cfg(all(target_os = "linux", target_env = "gnu"))]
mod slots;
#[cfg(all(target_os = "linux", target_env = "gnu", test))]
mod tests;
#[cfg(all(target_os = "linux", target_env = "gnu"))]
mod unwinder;
#[cfg(all(target_os = "linux", target_env = "gnu"))]
use protocol as imp;

#[cfg(any(target_os = "macos", test))]
mod frame_pointers;
#[cfg(target_os = "macos")]
mod suspend;
#[cfg(target_os = "macos")]
use suspend as imp;

// Windows' stack copy; its pure logic is tested on every platform.
#[cfg(any(windows, test))]
#[cfg_attr(not(windows), allow(dead_code))]
mod copy;
#[cfg(windows)]
mod windows;
#[cfg(windows)]
use windows as imp;
/// A suspended thread's registers and stack copy, for reading its wait (`sys/windows_wait.rs`).
#[cfg(all(windows, target_arch = "x86_64"))]
pub(crate) use windows::imp::Snapshot;

#[cfg(not(any(all(target_os = "linux", target_env = "gnu"), target_os = "macos", windows)))]
mod other;
#[cfg(not(any(all(target_os = "linux", target_env = "gnu"), target_os = "macos", windows)))]
use other as imp;

/// The calling thread's own stack, innermost first, walked directly: every backend answers so for
/// the thread that asks. The frames of the capture itself are left out: everything up to the
/// outermost frame of this function, of [`capture`] or of the backend's `entries`.
#[inline(never)]
#[cfg_attr(
    not(any(all(target_os = "linux", target_env = "gnu"), target_os = "macos", windows)),
    allow(dead_code)
)]
fn own_stack(entries: &[usize]) -> Captured {
    let mut frames: Vec<(usize, usize)> = Vec::new();
    backtrace::trace(|frame| {
        frames.push((frame.ip() as usize, frame.symbol_address() as usize));
        true
    });
    let ours = [
        own_stack as fn(&[usize]) -> Captured as usize,
        capture as fn(&[i32], Duration, Policy) -> Vec<Captured> as usize,
    ];
    let start = frames
        .iter()
        .rposition(|(_, symbol)| ours.contains(symbol) || entries.contains(symbol))
        .map_or(0, |last| last + 1);
    let ips = frames[start..].iter().map(|&(ip, _)| ip);
    Captured::Frames(ips.take_while(|&ip| ip != 0).collect())
}

/// What [`capture`] learned about one thread.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Captured {
    /// Raw instruction pointers, innermost first, signal-handler frames stripped. All are
    /// return-address-like, for `probe::symbols::resolve`: the first is the interrupted pc + 1.
    Frames(Vec<usize>),
    /// The thread did not answer in time (signals blocked, stuck inside the unwinder, ...).
    NoAnswer,
    /// No thread with that id exists (any more).
    Exited,
    /// This platform or build cannot capture other threads' stacks; the text says why.
    Unsupported(&'static str),
    /// Capture is turned off (`LEAKCHECK_STACKS=off`).
    Disabled,
    /// The thread was not signalled, because the signal could change what it sees (the policy
    /// forbids it) or harm it; the text says why ("it blocks the capture signal, ...").
    NotSignalled(String),
}

/// Which threads a capture may interrupt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Policy {
    /// The caller is about to report these threads as its own leak (a per-test check in lineage
    /// mode): a thread blocked in a call whose interruption it would see (`EINTR`) may be
    /// signalled. Threads that block or wait for the signal, or lack the stack for the handler,
    /// are still left alone.
    OwnLeaks,
    /// The threads may belong to others (`dump()`, `check_binary!`, the process-diff fallback):
    /// only threads blocked in a call the kernel restarts transparently are signalled.
    Transparent,
}

/// Captures the current stack of each thread in `tids` (kernel thread ids of this process).
///
/// Returns one [`Captured`] per tid, in the same order. The calling thread's own stack is
/// captured directly. Each thread gets `timeout` from the moment it is asked; at most 64 are
/// asked at once, so a call lasts at most about `timeout * ceil(tids.len() / 64)`.
/// Calls are serialized process-wide. Before signalling a thread, its state in `/proc` is read
/// and `policy` applied; a thread left alone is [`Captured::NotSignalled`] with the reason.
pub(crate) fn capture(tids: &[i32], timeout: Duration, policy: Policy) -> Vec<Captured> {
    if !crate::config::stacks_enabled() {
        return vec![Captured::Disabled; tids.len()];
    }
    imp::capture(tids, timeout, policy)
}
