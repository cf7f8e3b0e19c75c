//! Every target without a backend (iOS and the other Apple systems too): lists no thread and no
//! child, so checks of threads and children cannot run; [`UNSEEN`] says so once per process
//! instead of letting every check pass in silence. Tokio tasks are checked as everywhere (tokio's metrics).

use std::time::Duration;

use super::{ChildStat, Liveness, Unseen};
use crate::model::KernelWait;

const NO_BACKEND: &str = "leakcheck has no backend for this platform yet";

pub(crate) const UNSEEN: &[Unseen] = &[
    Unseen {
        what: "threads",
        why: "cannot list the process's threads",
    },
    Unseen {
        what: "child processes",
        why: "cannot list the process's children",
    },
];

pub(crate) fn threads() -> Option<Vec<i32>> {
    None
}

pub(crate) fn thread_count() -> Option<usize> {
    None
}

pub(crate) fn thread_name(_tid: i32) -> Option<String> {
    None
}

pub(crate) fn kernel_wait(_tid: i32) -> KernelWait {
    KernelWait::default()
}

pub(crate) fn current_tid() -> i32 {
    0
}

pub(crate) fn creation_hook() -> Result<(), &'static str> {
    Err(NO_BACKEND)
}

pub(crate) fn child_pids() -> Option<Vec<i32>> {
    None
}

#[cfg(test)]
pub(crate) fn syscall_number(_name: &str) -> Option<i64> {
    None
}

pub(crate) fn at_exit(handler: fn(Option<i32>)) {
    super::at_exit_without_status(handler);
}

pub(crate) fn before_main() {}

pub(crate) fn children_hooked() -> bool {
    false
}

pub(crate) const KILLED: &str = "killed";

pub(crate) fn process_clock() -> Duration {
    Duration::ZERO
}

pub(crate) fn child_liveness(_pid: i32, _started: Duration) -> Liveness {
    Liveness::Gone
}

pub(crate) fn child_stat(_pid: i32) -> Option<ChildStat> {
    None
}

pub(crate) fn child_cmdline(_pid: i32) -> Vec<String> {
    Vec::new()
}

pub(crate) fn kill_child(_pid: i32, _started: Option<Duration>, _patience: Duration) -> bool {
    false
}
