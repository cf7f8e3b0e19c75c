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
    let hz = crate::probe::procfs::ticks_per_second();
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

/// The pids of this process's children (running or zombie): from each thread's
/// `/proc/self/task/<tid>/children` (costs what the process's threads cost), else, on kernels
/// without it (`CONFIG_PROC_CHILDREN`), by scanning every `/proc/<pid>/stat`.
pub(crate) fn child_pids() -> Vec<i32> {
    let mut found = Vec::new();
    let mut supported = false;
    if let Ok(tasks) = std::fs::read_dir("/proc/self/task") {
        for task in tasks.flatten() {
            if let Ok(text) = std::fs::read_to_string(task.path().join("children")) {
                supported = true;
                found.extend(text.split_whitespace().filter_map(|pid| pid.parse::<i32>().ok()));
            }
        }
    }
    if supported {
        found.sort_unstable();
        found.dedup();
        return found;
    }
    scan_child_pids()
}

/// [`child_pids`] by scanning every process's `/proc/<pid>/stat` for our pid as parent.
fn scan_child_pids() -> Vec<i32> {
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

    /// Both ways of listing children see a child while it runs, and not once it is reaped.
    #[cfg(target_os = "linux")]
    #[test]
    fn lists_children_both_ways() {
        let mut child = std::process::Command::new("sleep").arg("5").spawn().unwrap();
        let pid = child.id() as i32;
        assert!(child_pids().contains(&pid));
        assert!(scan_child_pids().contains(&pid));
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(!child_pids().contains(&pid));
        assert!(!scan_child_pids().contains(&pid));
    }
}
