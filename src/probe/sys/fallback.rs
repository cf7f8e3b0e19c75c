//! Every target without a backend (iOS and the other Apple systems too): lists no thread and no
//! child, so checks of threads and children cannot run; [`UNSEEN`] says so once per process
//! instead of letting every check pass in silence. Tokio tasks are checked as everywhere (tokio's metrics).

use super::Unseen;
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

/// Children are diffed here, never recorded (see `super::unrecorded`).
pub(crate) use super::unrecorded::{
    child_cmdline, child_liveness, child_stat, kill_child, process_clock, KILLED,
};
