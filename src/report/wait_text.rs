//! A thread's wait in words, for the first line of its block: `untimed wait (futex, no wake-up
//! in 300ms)`, `accept() on 127.0.0.1:40123 (tcp, listening)`.

use std::fmt::Write as _;
use std::time::Duration;

use crate::model::{KernelWait, Wait, WaitKind};

/// The wait in words.
pub(crate) fn describe(wait: &Wait) -> String {
    let call = wait.call.as_deref().unwrap_or("a system call");
    let window = wait.window.map(short).unwrap_or_default();
    let woke = match (wait.wakeups, wait.window) {
        (Some(0), Some(_)) => format!(", no wake-up in {window}"),
        (Some(1), Some(_)) => format!(", woke once in {window}"),
        (Some(n), Some(_)) => format!(", woke {n} times in {window}"),
        _ => String::new(),
    };
    match wait.kind {
        WaitKind::Untimed => format!("untimed wait ({call} with no timeout{woke})"),
        WaitKind::Timed => format!("timed wait ({call} with a timeout{woke})"),
        WaitKind::SleepLoop => match &wait.call {
            Some(call) => format!("sleep loop ({call}{woke})"),
            None => format!("sleep loop ({})", woke.trim_start_matches(", ")),
        },
        WaitKind::Io => {
            let call = io_call(call);
            match wait.resources.as_slice() {
                [] => format!("blocked in IO ({call}())"),
                [one] => format!("blocked in IO: {call}() on {one}"),
                many => format!(
                    "blocked in IO: {call}() on {} resources: {}",
                    many.len(),
                    many.join(", ")
                ),
            }
        }
        WaitKind::Running => match (wait.cpu, wait.window) {
            (Some(cpu), Some(window)) => format!("running ({} of CPU in {})", short(cpu), short(window)),
            _ => "running".to_owned(),
        },
        WaitKind::Other => format!("blocked in {call}{woke}"),
    }
}

/// The end of a survivor's first line: `, untimed wait (...)` when its wait was classified, else
/// the kernel's state (`, sleeping in futex_wait_queue, syscall futex`).
pub(crate) fn kernel(kernel: &KernelWait) -> String {
    if let Some(wait) = &kernel.wait {
        return format!(", {}", describe(wait));
    }
    let state = match kernel.state {
        Some('S') => "sleeping",
        Some('D') => "in uninterruptible wait",
        Some('R') => "running",
        Some('T') | Some('t') => "stopped",
        Some('Z') => "exiting",
        _ => return String::new(),
    };
    let mut text = format!(", {state}");
    let detail: Vec<&str> = [kernel.wchan.as_deref(), kernel.syscall.as_deref()]
        .into_iter()
        .flatten()
        .collect();
    if !detail.is_empty() && state != "running" {
        let _ = write!(text, " in {}", detail.join(", syscall "));
    }
    text
}

/// A wait class in two words, for a group whose members wait differently.
pub(crate) fn class(kind: Option<WaitKind>) -> &'static str {
    match kind {
        Some(WaitKind::Untimed) => "untimed wait",
        Some(WaitKind::Timed) => "timed wait",
        Some(WaitKind::SleepLoop) => "sleep loop",
        Some(WaitKind::Io) => "blocked in IO",
        Some(WaitKind::Running) => "running",
        Some(WaitKind::Other) => "other wait",
        None => "not classified",
    }
}

/// The call as users know it: `accept4` is `accept`, `epoll_pwait` is `epoll_wait`.
fn io_call(call: &str) -> &str {
    match call {
        "accept4" => "accept",
        "recvfrom" | "recvmsg" => "recv",
        "epoll_pwait" | "epoll_pwait2" => "epoll_wait",
        "ppoll" => "poll",
        "pselect6" => "select",
        other => other,
    }
}

/// `300ms`, `1.2s`.
fn short(duration: Duration) -> String {
    if duration < Duration::from_secs(1) {
        format!("{}ms", duration.as_millis())
    } else {
        format!("{:.1}s", duration.as_secs_f64())
    }
}
