//! [`dump`]: every thread of the process with its current stack and creator, and every child
//! process with the thread that started it, for looking at a live process (the seed's "profile of
//! all goroutines"), in or outside tests.

mod children;

pub use children::DumpedChild;

use std::fmt;
use std::time::Duration;

use crate::model::frame;
use crate::model::{KernelWait, Stack};
use crate::probe::stack::{Captured, Policy};
#[cfg(feature = "tokio")]
use crate::probe::tasks;
use crate::probe::{lineage, singleton, symbols, sys};
use crate::report::render_frames;

/// A snapshot of the process's threads (and the current runtime's task count).
///
/// Its `Display` prints one block per thread: id, name, kernel state, who created it and where,
/// and its current stack with library frames folded.
///
/// # Examples
///
/// ```
/// let dump = leakcheck::dump();
/// assert!(dump.threads().any(|thread| thread.tid() > 0));
/// println!("{dump}");
/// ```
#[derive(Debug, Clone)]
pub struct Dump {
    threads: Vec<DumpedThread>,
    /// Why the process's threads could not be listed, where they could not.
    unlisted: Option<&'static str>,
    tasks: Option<usize>,
    children: Vec<DumpedChild>,
}

/// One thread of a [`Dump`].
#[derive(Debug, Clone)]
pub struct DumpedThread {
    tid: i32,
    name: Option<String>,
    kernel: KernelWait,
    stack: Stack,
    creator: Option<String>,
    created_at: Option<String>,
    singleton: bool,
}

impl DumpedThread {
    /// The kernel thread id (on macOS, the name of the thread's Mach port in this process).
    ///
    /// # Examples
    ///
    /// ```
    /// assert!(leakcheck::dump().threads().all(|thread| thread.tid() > 0));
    /// ```
    pub fn tid(&self) -> i32 {
        self.tid
    }

    /// The thread's name, if it has one.
    ///
    /// # Examples
    ///
    /// ```
    /// let names: Vec<_> = leakcheck::dump().threads().filter_map(|t| t.name().map(String::from)).collect();
    /// assert!(!names.is_empty());
    /// ```
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    /// The function it is stuck in: the first frame of its current stack in the user's code.
    ///
    /// # Examples
    ///
    /// ```
    /// for thread in leakcheck::dump().threads() {
    ///     println!("{:?}", thread.stuck_in());
    /// }
    /// ```
    pub fn stuck_in(&self) -> Option<&str> {
        match &self.stack {
            Stack::Frames(frames) => frame::first_user_frame(frames).map(|frame| frame.function.as_str()),
            Stack::Missing(_) => None,
        }
    }

    /// Every function of its current stack, innermost first (empty if it was not captured).
    ///
    /// # Examples
    ///
    /// ```
    /// let dump = leakcheck::dump();
    /// assert!(dump.threads().any(|thread| thread.stack().count() > 0));
    /// ```
    pub fn stack(&self) -> impl Iterator<Item = &str> {
        let frames = match &self.stack {
            Stack::Frames(frames) => frames.as_slice(),
            Stack::Missing(_) => &[],
        };
        frames.iter().map(|frame| frame.function.as_str())
    }

    /// Why its stack is missing, if it is: capture is off or unsupported, or the thread was not
    /// interrupted because that could change what it sees ("not interrupted: it is blocked in
    /// `recvfrom` on a socket with a receive or send timeout, ...").
    ///
    /// # Examples
    ///
    /// ```
    /// for thread in leakcheck::dump().threads() {
    ///     if let Some(why) = thread.missing_stack() {
    ///         println!("thread {}: no stack: {why}", thread.tid());
    ///     }
    /// }
    /// ```
    pub fn missing_stack(&self) -> Option<&str> {
        match &self.stack {
            Stack::Frames(_) => None,
            Stack::Missing(why) => Some(why),
        }
    }

    /// The name of the thread that created it, where known.
    ///
    /// # Examples
    ///
    /// ```
    /// for thread in leakcheck::dump().threads() {
    ///     println!("{:?}", thread.creator());
    /// }
    /// ```
    pub fn creator(&self) -> Option<&str> {
        self.creator.as_deref()
    }

    /// Whether it is a process-wide singleton: created while a one-time initializer ran
    /// (`Once`, `OnceLock`, `LazyLock`, `lazy_static`, ...), as the threads of a pool in a
    /// `static` are. Checks never charge such a thread to a test.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::{mpsc, Mutex, OnceLock};
    ///
    /// static POOL: OnceLock<Mutex<mpsc::Sender<()>>> = OnceLock::new();
    /// let (started, ready) = mpsc::channel();
    /// POOL.get_or_init(|| {
    ///     let (keep, wait) = mpsc::channel::<()>();
    ///     std::thread::Builder::new()
    ///         .name("singleton".into())
    ///         .spawn(move || {
    ///             started.send(()).unwrap();
    ///             while wait.recv().is_ok() {}
    ///         })
    ///         .unwrap();
    ///     Mutex::new(keep)
    /// });
    /// ready.recv().unwrap();
    /// let dump = leakcheck::dump();
    /// let pool = dump.threads().find(|t| t.name() == Some("singleton")).unwrap();
    /// assert!(pool.is_singleton());
    /// ```
    pub fn is_singleton(&self) -> bool {
        self.singleton
    }
}

impl Dump {
    /// The threads, in kernel id order.
    ///
    /// # Examples
    ///
    /// ```
    /// assert!(leakcheck::dump().threads().count() >= 1);
    /// ```
    pub fn threads(&self) -> impl Iterator<Item = &DumpedThread> {
        self.threads.iter()
    }

    /// Why [`threads`](Self::threads) is empty when this platform cannot list a process's
    /// threads (leakcheck has no backend for it yet): the list is then unavailable, not empty.
    /// `None` where threads were listed.
    ///
    /// # Examples
    ///
    /// ```
    /// let dump = leakcheck::dump();
    /// if let Some(why) = dump.threads_unavailable() {
    ///     println!("threads: unavailable ({why})");
    /// }
    /// ```
    pub fn threads_unavailable(&self) -> Option<&str> {
        self.unlisted
    }

    /// The process's child processes not reaped yet, in pid order.
    ///
    /// # Examples
    ///
    /// ```
    /// for child in leakcheck::dump().children() {
    ///     println!("{} {}", child.pid(), child.command());
    /// }
    /// ```
    pub fn children(&self) -> impl Iterator<Item = &DumpedChild> {
        self.children.iter()
    }

    /// The current runtime's live task count, if the dump was taken inside a runtime.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(leakcheck::dump().tasks(), None);
    /// ```
    pub fn tasks(&self) -> Option<usize> {
        self.tasks
    }
}

/// Captures every thread of the process with its current stack and creator.
///
/// Stacks are captured with a signal (Linux); where that is off or unsupported, each thread says
/// why. The threads are the program's, so the dump changes nothing they can see: it signals only
/// threads blocked in a call the kernel restarts transparently (a `futex` wait without a timeout,
/// `read`/`recv`/`accept` without a socket timeout, `waitpid`), and never one that blocks or waits
/// for the signal or is near the end of its stack. Others (running, sleeping, in `epoll_wait`, in
/// a socket read with a timeout, ...) are listed with their kernel state and the reason they have
/// no stack ([`DumpedThread::missing_stack`]). Costs milliseconds per hundred threads plus symbol
/// resolution (slow the first time).
///
/// # Examples
///
/// ```
/// let (started, ready) = std::sync::mpsc::channel();
/// let worker = std::thread::Builder::new()
///     .name("sleepy".into())
///     .spawn(move || {
///         started.send(()).unwrap();
///         std::thread::sleep(std::time::Duration::from_millis(200))
///     })
///     .unwrap();
/// ready.recv().unwrap();
/// let dump = leakcheck::dump();
/// assert!(dump.threads().any(|thread| thread.name() == Some("sleepy")));
/// worker.join().unwrap();
/// ```
pub fn dump() -> Dump {
    let listed = sys::threads();
    let unlisted = listed.is_none().then(|| unseen_threads_why());
    let mut tids = listed.unwrap_or_default();
    tids.sort_unstable();
    // Names and kernel states first: resolving symbols below can take a while.
    let seen: Vec<_> = tids
        .iter()
        .map(|&tid| (sys::thread_name(tid), sys::kernel_wait(tid)))
        .collect();
    // Transparent: the threads belong to the program, whose calls must not see an `EINTR`.
    let captured = sys::capture(&tids, Duration::from_millis(200), Policy::Transparent);
    let threads = tids
        .iter()
        .zip(captured)
        .zip(seen)
        .map(|((&tid, captured), (name, kernel))| {
            let node = lineage::by_tid(tid);
            let created_at = node
                .as_ref()
                .map(|node| symbols::resolve(node.created_at()))
                .and_then(|frames| frame::first_user_frame(&frames).and_then(frame::short_location));
            DumpedThread {
                tid,
                name,
                kernel,
                stack: match captured {
                    Captured::Frames(ips) => Stack::Frames(symbols::resolve(&ips)),
                    Captured::NoAnswer => Stack::Missing("did not answer the stack-capture signal".into()),
                    Captured::Exited => Stack::Missing("exited".into()),
                    Captured::Unsupported(why) => Stack::Missing(why.into()),
                    Captured::Disabled => Stack::Missing("stack capture is off".into()),
                    Captured::NotSignalled(why) => Stack::Missing(format!("not interrupted: {why}")),
                },
                creator: node
                    .as_ref()
                    .and_then(|n| n.parent.as_ref())
                    .and_then(|p| p.name().map(String::from)),
                created_at,
                singleton: node.as_deref().is_some_and(singleton::is_singleton),
            }
        })
        .collect();
    Dump {
        threads,
        unlisted,
        #[cfg(feature = "tokio")]
        tasks: tasks::current_task_count(),
        #[cfg(not(feature = "tokio"))]
        tasks: None,
        children: children::children(),
    }
}

/// Why this platform lists no thread, as its backend says.
fn unseen_threads_why() -> &'static str {
    sys::UNSEEN
        .iter()
        .find(|unseen| unseen.what == "threads")
        .map_or("this platform cannot list a process's threads", |unseen| {
            unseen.why
        })
}

impl fmt::Display for Dump {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.unlisted {
            Some(why) => writeln!(f, "threads: unavailable ({why})")?,
            None => writeln!(f, "{} threads", self.threads.len())?,
        }
        if let Some(tasks) = self.tasks {
            writeln!(f, "{tasks} tasks alive in the current tokio runtime")?;
        }
        for thread in &self.threads {
            writeln!(f)?;
            let name = thread
                .name
                .as_deref()
                .map(|n| format!(" {n:?}"))
                .unwrap_or_default();
            let state = thread.kernel.state.map(|s| format!(" [{s}]")).unwrap_or_default();
            let wchan = thread
                .kernel
                .wchan
                .as_deref()
                .map(|w| format!(" in {w}"))
                .unwrap_or_default();
            writeln!(f, "thread {}{name}{state}{wchan}", thread.tid)?;
            if let Some(creator) = &thread.creator {
                let at = thread
                    .created_at
                    .as_deref()
                    .map(|at| format!(" at {at}"))
                    .unwrap_or_default();
                writeln!(f, "   created by {creator:?}{at}")?;
            }
            if thread.singleton {
                writeln!(
                    f,
                    "   process-wide singleton (created inside a one-time initializer)"
                )?;
            }
            match &thread.stack {
                Stack::Frames(frames) => render_frames(f, frames, frame::first_user_frame(frames), false)?,
                Stack::Missing(why) => writeln!(f, "     (no stack: {why})")?,
            }
        }
        if !self.children.is_empty() {
            writeln!(f)?;
            writeln!(f, "{} child processes", self.children.len())?;
            for child in &self.children {
                children::render(f, child)?;
            }
        }
        Ok(())
    }
}
