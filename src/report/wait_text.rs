//! A thread's wait in words, for the first line of its block: `untimed wait (futex, no wake-up
//! in 300ms)`, `accept() on 127.0.0.1:40123 (tcp, listening)`.

use std::time::Duration;

use crate::model::{Wait, WaitKind};

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
