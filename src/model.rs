//! The plain data every layer shares: survivors and their kinds, stacks, kernel state and hints,
//! and the runtime settings of an async test, the kinds of ignore rule. No behaviour beyond small
//! accessors; nothing here names another module of the crate but [`frame`].

pub(crate) mod duration;
pub(crate) mod frame;
// A symbolic link to `macros/src/ignore_kinds.rs`: one file, compiled by both crates (cargo packages
// the link's target, so each published crate carries its copy).
mod ignore_kinds;

pub(crate) use frame::Frame;
pub(crate) use ignore_kinds::{did_you_mean, IgnoreKind};

impl IgnoreKind {
    /// The rule of this kind as an attribute argument, ready to paste: `ignore_thread = "pool-*"`.
    pub(crate) fn argument(self, pattern: &str) -> String {
        format!("{} = {pattern:?}", self.key())
    }
}

/// Threads, tasks or child processes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Kind {
    Thread,
    Task,
    Process,
}

impl Kind {
    pub(crate) fn noun(self, count: usize) -> &'static str {
        match (self, count) {
            (Kind::Thread, 1) => "thread",
            (Kind::Thread, _) => "threads",
            (Kind::Task, 1) => "task",
            (Kind::Task, _) => "tasks",
            (Kind::Process, 1) => "child process",
            (Kind::Process, _) => "child processes",
        }
    }
}

/// A survivor's current stack (thread) or async trace (task), or why there is none.
#[derive(Clone, Debug)]
pub(crate) enum Stack {
    Frames(Vec<Frame>),
    Missing(String),
}

/// One thread or task that outlived its test.
#[derive(Clone, Debug)]
pub(crate) struct Survivor {
    pub(crate) kind: Kind,
    pub(crate) name: Option<String>,
    /// Kernel thread id, or tokio task id (0 when unknown).
    pub(crate) id: u64,
    pub(crate) kernel: Option<KernelWait>,
    pub(crate) stack: Stack,
    /// Creation backtrace (threads), caller first.
    pub(crate) created_at: Vec<Frame>,
    /// Name of the thread that created it.
    pub(crate) creator: Option<String>,
    /// Name of the test thread it descends from (whole-binary check).
    pub(crate) test: Option<String>,
    /// Where the task was spawned (tasks, `--cfg tokio_unstable`).
    pub(crate) spawn_site: Option<SpawnSite>,
    pub(crate) hint: Option<Hint>,
    /// What `/proc` says of a child process (`Kind::Process` only; its pid is `id`).
    pub(crate) process: Option<ProcessInfo>,
    /// For a timed wait whose deadline is known: how long until it wakes by itself (and may end).
    pub(crate) wakes_in: Option<std::time::Duration>,
    /// The survivor (task) that was running the code which spawned it, if that one leaked too:
    /// it ends when its root does.
    pub(crate) parent: Option<u64>,
}

/// Where a task was spawned, and what the source there says of it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct SpawnSite {
    /// `file:line` of the spawn call.
    pub(crate) at: String,
    /// The expression a task `Builder`'s `.name(..)` is given there, when it is not a string
    /// literal (a literal name is the survivor's `name`): `format!("conn-{i}")`. Read from the
    /// source: tokio does not expose task names.
    pub(crate) named_by: Option<String>,
}

/// A surviving child process, as `/proc/<pid>` and the spawn record describe it.
#[derive(Clone, Debug, Default)]
pub(crate) struct ProcessInfo {
    /// Its arguments, `argv[0]` first (copied at spawn time, else from `/proc/<pid>/cmdline`).
    pub(crate) argv: Vec<String>,
    /// `/proc/<pid>/stat` state: `R` running, `S` sleeping, `Z` exited but never waited, ...
    pub(crate) state: Option<char>,
    /// Time since it was started.
    pub(crate) age: Option<std::time::Duration>,
    /// The entry point that started it (`posix_spawnp`, `fork`), where recorded.
    pub(crate) via: Option<&'static str>,
}

impl ProcessInfo {
    /// The command line, arguments joined by spaces.
    pub(crate) fn command(&self) -> String {
        self.argv.join(" ")
    }

    /// The program's name: the last path segment of `argv[0]`.
    pub(crate) fn program(&self) -> Option<&str> {
        let first = self.argv.first()?;
        Some(first.rsplit('/').next().unwrap_or(first))
    }
}

impl Survivor {
    /// The frame where it is stuck: the innermost user frame, else the boundary frame of a
    /// dependency (see [`frame::stuck_frame`]).
    pub(crate) fn stuck_frame(&self) -> Option<&Frame> {
        match &self.stack {
            Stack::Frames(frames) => frame::stuck_frame(frames),
            Stack::Missing(_) => None,
        }
    }

    /// Where it was created: the creation chain (the spawn, then the user's frames up to the
    /// test), or the spawn site.
    pub(crate) fn origin(&self) -> Option<String> {
        frame::creation_chain(&self.created_at)
            .or_else(|| self.spawn_site.as_ref().map(|site| site.at.clone()))
    }
}

/// A survivor an ignore rule hid, for verbose reports.
#[derive(Clone, Debug)]
pub(crate) struct Hidden {
    pub(crate) survivor: Survivor,
    pub(crate) rule: String,
}

/// Tasks known only by count (builds without `--cfg tokio_unstable`).
#[derive(Clone, Debug)]
pub(crate) struct TaskCount {
    pub(crate) alive: usize,
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
    /// How it waits, classified across the settle window.
    pub(crate) wait: Option<Wait>,
}

/// How a thread waits, classified from what the kernel said at the start and the end of the
/// settle window (system call and arguments, context switches, CPU time).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Wait {
    pub(crate) kind: WaitKind,
    /// The system call it waits in (`futex`, `accept4`, `epoll_wait`, ...).
    pub(crate) call: Option<String>,
    /// Voluntary wake-ups between the two samples, when both were taken.
    pub(crate) wakeups: Option<u64>,
    /// Time between the two samples.
    pub(crate) window: Option<std::time::Duration>,
    /// CPU time used between the two samples.
    pub(crate) cpu: Option<std::time::Duration>,
    /// What an IO wait waits on: `127.0.0.1:40123 (tcp, listening)`, `a unix socket`, ...
    pub(crate) resources: Vec<String>,
}

/// The kinds of wait a report tells apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WaitKind {
    /// Blocked with no timeout, and not woken during the window: only a notification ends it.
    Untimed,
    /// Blocked with a timeout: it wakes by itself.
    Timed,
    /// Sleeping, or woken again and again: a loop.
    SleepLoop,
    /// Blocked reading, accepting or polling file descriptors.
    Io,
    /// On a CPU, or runnable.
    Running,
    /// Blocked in another system call.
    Other,
}

/// A likely cause, its fix, and what it is based on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Hint {
    pub(crate) cause: String,
    pub(crate) fix: String,
    pub(crate) evidence: String,
}

/// The runtime flavor of an async `#[leak_test]`, as in `#[tokio::test(flavor = "...")]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flavor {
    /// `flavor = "current_thread"` (the default, as for `#[tokio::test]`).
    CurrentThread,
    /// `flavor = "multi_thread"`.
    MultiThread,
}

/// The runtime an async `#[leak_test]` builds for its body.
#[derive(Clone, Copy, Debug)]
pub struct Runtime {
    /// Scheduler flavor.
    pub flavor: Flavor,
    /// `worker_threads = N` (multi_thread only).
    pub worker_threads: Option<usize>,
    /// `start_paused = true`: the clock starts paused, as with `#[tokio::test(start_paused = true)]`.
    pub start_paused: bool,
}
