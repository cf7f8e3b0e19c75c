//! What `/proc/<pid>` says about a child process: its command line, state and start time, and
//! which processes are this process's children (the fallback's before/after diff).

use std::time::Duration;

/// A child's `/proc/<pid>/stat` fields a report needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Stat {
    pub(crate) state: char,
    pub(crate) ppid: i32,
    /// Start time since boot (`CLOCK_BOOTTIME`).
    pub(crate) started: Duration,
}

/// Reads `/proc/<pid>/stat` (`None` if the process is gone or `/proc` is unavailable).
pub(crate) fn stat(pid: i32) -> Option<Stat> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat(&text)
}

/// Fields after the command name (which may hold spaces and parentheses): 3 state, 4 ppid,
/// 22 start time in clock ticks.
fn parse_stat(text: &str) -> Option<Stat> {
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let state = fields.first()?.chars().next()?;
    let ppid = fields.get(1)?.parse().ok()?;
    let ticks: u64 = fields.get(19)?.parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Some(Stat {
        state,
        ppid,
        started: Duration::from_millis(ticks * 1000 / hz),
    })
}

/// `/proc/<pid>/cmdline` as arguments (empty for a zombie or a gone process).
pub(crate) fn cmdline(pid: i32) -> Vec<String> {
    let Ok(bytes) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
        return Vec::new();
    };
    bytes
        .split(|&b| b == 0)
        .filter(|arg| !arg.is_empty())
        .map(|arg| String::from_utf8_lossy(arg).into_owned())
        .collect()
}

/// The pids of this process's children (running or zombie), from `/proc/*/stat`.
pub(crate) fn child_pids() -> Vec<i32> {
    // SAFETY: getpid has no preconditions.
    let me = unsafe { libc::getpid() };
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&pid| pid != me && stat(pid).is_some_and(|stat| stat.ppid == me))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A command name with spaces and parentheses does not shift the fields.
    #[test]
    fn parses_stat_with_odd_name() {
        let stat =
            parse_stat("42 (a (b) c) S 7 42 42 0 -1 4194304 100 0 0 0 1 2 0 0 20 0 1 0 250 1000 10").unwrap();
        assert_eq!(stat.state, 'S');
        assert_eq!(stat.ppid, 7);
        assert!(stat.started > Duration::ZERO);
    }
}
