//! Thread survivors: which threads a check owns, and what each one is doing.
//!
//! Two modes, chosen per process at the first check:
//!
//! - **Lineage** (Linux with glibc, the interposer in effect): a check owns the live threads that
//!   its root thread created, directly or transitively, minus its baseline. Exact under parallel
//!   `cargo test`, and a clean pass costs one registry lookup.
//! - **Process diff** (the fallback): a check owns every thread of the process that was not alive
//!   at its entry snapshot. Trustworthy only with one test per process (`cargo nextest`); reports
//!   say so. Plain `cargo test` runs tests in parallel threads, whose threads it would blame.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::ownership::{self, NotOwned};
use super::wait::WaitSamples;
use crate::config::Settings;
use crate::model::{Frame, Hidden, KernelWait, Kind, Stack, Survivor};
use crate::options::Options;
use crate::probe::lineage::{self, Node};
use crate::probe::procfs::truncate_comm;
use crate::probe::stack::{self, Captured, Policy};
use crate::probe::sys::{self, thread_name};
use crate::probe::{procfs, singleton, startup, symbols, wakeup};
use crate::rules::{Rule, Subject, BUILTINS};

use super::untracked;

/// How long a stack capture waits for a thread to answer.
const CAPTURE_TIMEOUT: Duration = Duration::from_millis(200);

/// Which threads a check owns.
pub(crate) struct Scope {
    /// The thread whose descendants are checked (the test's thread).
    pub(crate) root: Arc<Node>,
    /// Descendants alive when the scope was entered (usually none: a list, so that an empty one
    /// costs nothing to make, where a `HashSet` seeds its hasher from the OS on each new thread).
    pub(crate) baseline: Vec<u64>,
    /// Threads of runtimes that the check itself owns and shuts down later (an async
    /// `#[leak_test]`'s own runtime): not survivors while that runtime lives.
    pub(crate) runtime_threads: Option<Arc<Mutex<HashSet<u64>>>>,
    /// Process threads at entry, for the process-diff fallback.
    pub(crate) entry_tids: Option<HashSet<i32>>,
}

impl Scope {
    /// A scope rooted at `root` (the calling thread's node), with what it already started as baseline.
    pub(crate) fn enter_at(root: Arc<Node>) -> Scope {
        let lineage_mode = lineage_mode();
        Scope {
            // No live descendant (the usual entry): no lookup, no allocation.
            baseline: match root.has_live_descendants() {
                true => lineage::live_descendants(&root)
                    .iter()
                    .map(|node| node.uid)
                    .collect(),
                false => Vec::new(),
            },
            root,
            runtime_threads: None,
            entry_tids: (!lineage_mode).then(|| process_tids().into_iter().collect()),
        }
    }

    /// What [`enter_at`](Self::enter_at) makes for a root that owned no live thread at entry, in
    /// lineage mode, without looking again: the attribute makes it only when the look after the
    /// body (the attribute's usual clean pass) finds something.
    pub(crate) fn owned_nothing_at_entry(root: Arc<Node>) -> Scope {
        Scope {
            root,
            baseline: Vec::new(),
            runtime_threads: None,
            entry_tids: None,
        }
    }

    /// A scope rooted at the calling thread without an entry snapshot (a plain `#[test]`): all it
    /// started counts. In the process-diff fallback, the baseline is the process at start-up.
    pub(crate) fn unentered() -> Scope {
        Scope {
            root: lineage::current_named(),
            baseline: Vec::new(),
            runtime_threads: None,
            entry_tids: (!lineage_mode()).then(startup::startup_tids),
        }
    }

    /// Whether this scope certainly owns no live thread now: lineage mode, no live descendant
    /// of the root, and not one test per process (where untracked threads count too). Reads a
    /// counter; what a clean pass costs. `false` means "look", not "leak".
    pub(crate) fn nothing_alive(&self) -> bool {
        self.entry_tids.is_none() && !self.root.has_live_descendants() && !untracked::one_test_per_process()
    }

    /// Why a live descendant of the root is not this scope's, if it is not: see
    /// [`ownership`](super::ownership).
    fn not_owned(&self, node: &Node, options: &Options) -> Option<NotOwned> {
        let baseline = options.baseline.as_deref();
        ownership::not_owned(node, self.root.uid, |uid| {
            self.baseline.contains(&uid) || baseline.is_some_and(|b| b.threads.contains(&uid))
        })
    }

    /// The mode note a report carries, if any: names the fallback, the reason for it, and its limit.
    pub(crate) fn mode_note(&self) -> Option<String> {
        self.entry_tids.as_ref().map(|_| {
            format!(
                "leakcheck compared the process's threads before and after instead of following thread \
                 lineage ({}): under parallel `cargo test` this can blame threads of other tests. Run \
                 one test per process (`cargo nextest run`) for exact verdicts.",
                fallback_reason()
            )
        })
    }
}

impl Scope {
    /// Which threads the check's stack capture may interrupt: in lineage mode every candidate is
    /// the test's own; the process diff may also see threads of others.
    pub(crate) fn capture_policy(&self) -> Policy {
        match self.entry_tids {
            None => Policy::OwnLeaks,
            Some(_) => Policy::Transparent,
        }
    }
}

/// Why checks use the process diff, for the mode note.
fn fallback_reason() -> &'static str {
    if !crate::config::get().map_or(true, |config| config.lineage) {
        "`LEAKCHECK_LINEAGE=off` asked for the process-diff fallback"
    } else if let Err(why) = sys::creation_hook() {
        why
    } else {
        "no thread creation went through the interposed `pthread_create` in this process"
    }
}

/// The process's threads; none where the platform cannot list them (said once per process, by
/// `report::unchecked`).
fn process_tids() -> Vec<i32> {
    sys::threads().unwrap_or_default()
}

/// Whether checks use thread lineage: the interposer is in effect, and `LEAKCHECK_LINEAGE=off`
/// did not ask for the process-diff fallback. Decided once per process (both parts are
/// definitive once known), then one load: every test asks on entry.
pub(crate) fn lineage_mode() -> bool {
    static MODE: AtomicU8 = AtomicU8::new(0);
    decided_once(&MODE, || {
        lineage::interposer_active() && crate::config::get().map_or(true, |config| config.lineage)
    })
}

/// Whether a check can conclude in one look that the calling thread owns nothing (lineage mode,
/// child processes attributed too, and not one test per process, where untracked threads count
/// too): decided once.
pub(crate) fn clean_in_one_look() -> bool {
    static ONE_LOOK: AtomicU8 = AtomicU8::new(0);
    decided_once(&ONE_LOOK, || {
        lineage_mode() && sys::children_hooked() && !untracked::one_test_per_process()
    })
}

/// A yes/no answer that never changes once known, kept in `cell` (0 unknown, 1 yes, 2 no): one
/// load after the first ask, which runs `decide`.
fn decided_once(cell: &AtomicU8, decide: fn() -> bool) -> bool {
    match cell.load(Ordering::Relaxed) {
        1 => true,
        2 => false,
        _ => {
            let answer = decide();
            cell.store(if answer { 1 } else { 2 }, Ordering::Relaxed);
            answer
        }
    }
}

/// A thread a check found alive.
#[derive(Clone)]
pub(crate) enum Candidate {
    Node(Arc<Node>),
    Tid(i32),
    /// A thread the registry never saw created (see [`super::untracked`]).
    Untracked(i32),
}

impl Candidate {
    pub(crate) fn tid(&self) -> Option<i32> {
        match self {
            Candidate::Node(node) => node.tid(),
            Candidate::Tid(tid) | Candidate::Untracked(tid) => Some(*tid),
        }
    }
}

/// The threads `scope` owns that are alive now, before ignore rules: the cheap look that a clean
/// pass makes exactly once.
pub(crate) fn candidates(scope: &Scope, options: &Options) -> Vec<Candidate> {
    let baseline = options.baseline.as_deref();
    if let Some(entry_tids) = &scope.entry_tids {
        let own = lineage::gettid();
        return process_tids()
            .into_iter()
            .filter(|tid| *tid != own && !entry_tids.contains(tid))
            .filter(|tid| !baseline.is_some_and(|b| b.tids.contains(tid)))
            .filter(|tid| !thread_name(*tid).is_some_and(|name| name.starts_with("leakcheck-")))
            .map(Candidate::Tid)
            .collect();
    }
    let runtime_threads = scope
        .runtime_threads
        .as_ref()
        .map(|set| set.lock().unwrap_or_else(|e| e.into_inner()).clone());
    // One test per process: threads no creation went through are this test's too. Costs one
    // read of `/proc/self/task` per look, under nextest only.
    let untracked = match untracked::one_test_per_process() {
        true => untracked::untracked_tids(),
        false => Vec::new(),
    };
    let untracked = untracked
        .into_iter()
        .filter(|tid| !baseline.is_some_and(|b| b.tids.contains(tid)))
        .map(Candidate::Untracked);
    lineage::live_descendants(&scope.root)
        .into_iter()
        .filter(|node| !scope.baseline.contains(&node.uid))
        .filter(|node| !baseline.is_some_and(|b| b.threads.contains(&node.uid)))
        .filter(|node| {
            !runtime_threads
                .as_ref()
                .is_some_and(|set| set.contains(&node.uid))
        })
        .filter(|node| scope.not_owned(node, options).is_none())
        .map(Candidate::Node)
        .chain(untracked)
        .collect()
}

/// The live descendants of `scope`'s root that are not the test's (singletons, work of shared
/// pools), with why: what a verbose report lists as not counted.
pub(crate) fn not_owned(scope: &Scope, options: &Options) -> Vec<(Candidate, NotOwned)> {
    if scope.entry_tids.is_some() {
        return Vec::new();
    }
    lineage::live_descendants(&scope.root)
        .into_iter()
        .filter_map(|node| {
            let why = scope.not_owned(&node, options)?;
            Some((Candidate::Node(node), why))
        })
        .collect()
}

/// Describes candidates (name, kernel state, current stack, creation site) and applies the
/// ignore rules. Returns the survivors and what the rules hid. `policy` says which threads the
/// stack capture may interrupt.
pub(crate) fn describe(
    candidates: &[Candidate],
    options: &Options,
    settings: &Settings,
    samples: &WaitSamples,
    policy: Policy,
) -> (Vec<Survivor>, Vec<Hidden>) {
    let capture = settings.capture_stacks;
    let tids: Vec<i32> = candidates.iter().map(|c| c.tid().unwrap_or(0)).collect();
    // Read the kernel's view first: a thread answering the capture signal shows as running.
    let kernels: Vec<_> = tids
        .iter()
        .map(|&tid| {
            (tid != 0).then(|| {
                let classified = samples.classify(tid);
                let kernel = sys::kernel_wait(tid);
                // Where the platform has no readings to classify (Windows), its own single
                // reading of the wait stands.
                KernelWait {
                    wait: classified.or(kernel.wait.clone()),
                    ..kernel
                }
            })
        })
        .collect();
    let captured = if capture {
        stack::capture(&tids, CAPTURE_TIMEOUT, policy)
    } else {
        tids.iter().map(|_| Captured::Disabled).collect()
    };

    let mut survivors = Vec::new();
    let mut hidden = Vec::new();
    // Whether each survivor was created outside `pthread_create`.
    let mut outside = Vec::new();
    for (((candidate, tid), captured), kernel) in candidates.iter().zip(&tids).zip(captured).zip(kernels) {
        let node = match candidate {
            Candidate::Node(node) => Some(node.clone()),
            Candidate::Tid(tid) => lineage::by_tid(*tid),
            Candidate::Untracked(_) => None,
        };
        let name = candidate_name(node.as_deref(), *tid);
        let created_at = creation_frames(node.as_deref());
        let stack = match captured {
            Captured::Frames(ips) => Stack::Frames(symbols::resolve(&ips)),
            Captured::NoAnswer => Stack::Missing(
                "did not answer the stack-capture signal in time (busy, or it began blocking signals)".into(),
            ),
            Captured::Exited => Stack::Missing("exited while its stack was being captured".into()),
            Captured::Unsupported(why) => Stack::Missing(why.into()),
            Captured::Disabled => Stack::Missing(
                "stack capture is off (`LEAKCHECK_STACKS=off` or `Options::capture_stacks(false)`)".into(),
            ),
            Captured::NotSignalled(why) => Stack::Missing(format!("not interrupted: {why}")),
        };
        let subject = Subject {
            name: name.as_deref(),
            kernel_name: !has_std_name(node.as_deref()),
            stack: match &stack {
                Stack::Frames(frames) => Some(frames),
                Stack::Missing(_) => None,
            },
            created_at: &created_at,
            spawn_site: None,
        };
        let singleton = node.as_deref().is_some_and(singleton_by_name);
        let rule = singleton
            .then(|| format!("not counted: {}", NotOwned::Singleton.describe()))
            .or_else(|| {
                options
                    .rules
                    .iter()
                    .find(|rule| rule.matches(&subject))
                    .map(|rule| rule.describe())
            })
            .or_else(|| {
                settings
                    .builtin_rules
                    .then(|| {
                        BUILTINS
                            .iter()
                            .find(|b| (b.matches)(&subject))
                            .map(|b| format!("built-in rule `{}`", b.name))
                    })
                    .flatten()
            });
        let survivor = Survivor {
            kind: Kind::Thread,
            name,
            id: *tid as u64,
            kernel,
            creator: node
                .as_ref()
                .and_then(|n| n.parent.as_ref())
                .and_then(|p| p.name().map(String::from)),
            test: node
                .as_ref()
                .and_then(|n| n.test_thread())
                .and_then(|t| t.name().map(String::from)),
            created_at,
            spawn_site: None,
            stack,
            hint: None,
            process: None,
            wakes_in: timed_wake(*tid),
            parent: None,
        };
        match rule {
            Some(rule) => hidden.push(Hidden { survivor, rule }),
            None => {
                outside.push(matches!(candidate, Candidate::Untracked(_)));
                survivors.push(survivor)
            }
        }
    }
    for (survivor, outside) in survivors.iter_mut().zip(outside) {
        survivor.hint = match outside {
            true => Some(untracked::hint()),
            false => crate::report::hints::for_survivor(survivor),
        };
    }
    crate::report::hints::for_group(&mut survivors);
    (survivors, hidden)
}

/// Whether `node` was created inside a one-time initializer that only its resolved name shows
/// (`once_cell`); learns that initializer's address for later threads. Paid only when a thread
/// is described, whose creation backtrace the report resolves anyway.
fn singleton_by_name(node: &Node) -> bool {
    if singleton::is_singleton(node) {
        return true;
    }
    let at = node.created_at().iter().find(|&&ip| {
        symbols::resolve(&[ip])
            .iter()
            .any(|frame| singleton::is_initializer_name(&frame.key))
    });
    if let Some(&ip) = at {
        singleton::learn(node, ip);
    }
    at.is_some()
}

/// How long until thread `tid`'s timed wait ends by itself, if it is in one: its deadline (an
/// absolute one exactly; a relative one as requested, an upper bound on what is left).
fn timed_wake(tid: i32) -> Option<std::time::Duration> {
    let (nr, args) = procfs::sample(tid).syscall?;
    match wakeup::wake(nr, args, std::time::Duration::ZERO) {
        wakeup::Wake::After(left) => Some(left),
        wakeup::Wake::Never | wakeup::Wake::Unknown => None,
    }
}

/// A candidate's own name: its std name if recorded, else the kernel's, unless that is only the
/// name Linux copies from the creator to an unnamed thread.
fn candidate_name(node: Option<&Node>, tid: i32) -> Option<String> {
    node.and_then(|n| n.name().map(String::from)).or_else(|| {
        let inherited = node
            .and_then(|n| n.parent.as_ref())
            .and_then(|p| p.name())
            .map(truncate_comm);
        thread_name(tid).filter(|name| Some(name.as_str()) != inherited.as_deref())
    })
}

/// Whether the name `candidate_name` gives is the full std name (else the kernel's 15 bytes).
fn has_std_name(node: Option<&Node>) -> bool {
    node.is_some_and(|n| n.name().is_some())
}

/// The resolved creation backtrace, starting at the creating caller.
fn creation_frames(node: Option<&Node>) -> Vec<Frame> {
    node.map(|node| resolved_creation(node).to_vec())
        .unwrap_or_default()
}

/// The node's creation backtrace, resolved and stripped once per thread.
fn resolved_creation(node: &Node) -> &[Frame] {
    node.resolved
        .get_or_init(|| Box::new(strip_creation_frames(symbols::resolve(node.created_at()))))
        .downcast_ref::<Vec<Frame>>()
        .map_or(&[], Vec::as_slice)
}

/// Whether a rule that needs no stack (name, creator) hides this candidate. Cheap enough to run
/// on every settle look, so a thread such a rule hides never costs its test the settle deadline.
pub(crate) fn hidden_without_stack(candidate: &Candidate, options: &Options) -> bool {
    if options.rules.is_empty() {
        return false;
    }
    let node = match candidate {
        Candidate::Node(node) => Some(node.clone()),
        Candidate::Tid(tid) => lineage::by_tid(*tid),
        Candidate::Untracked(_) => None,
    };
    let name = candidate_name(node.as_deref(), candidate.tid().unwrap_or(0));
    // Name rules need no symbols; creator rules read the creation backtrace, resolved once per
    // thread. A rule that hides nothing then costs a name comparison per look.
    let by_name = Subject {
        name: name.as_deref(),
        kernel_name: !has_std_name(node.as_deref()),
        stack: None,
        created_at: &[],
        spawn_site: None,
    };
    if options.rules.iter().any(|rule| rule.matches(&by_name)) {
        return true;
    }
    if !options.rules.iter().any(Rule::reads_creation) {
        return false;
    }
    let subject = Subject {
        created_at: node.as_deref().map_or(&[], resolved_creation),
        ..by_name
    };
    options.rules.iter().any(|rule| rule.matches(&subject))
}

/// Drops the frames of thread creation itself (std's `spawn`, the interposer) from a creation
/// backtrace, so its first frame is the caller.
pub(crate) fn strip_creation_frames(frames: Vec<Frame>) -> Vec<Frame> {
    use crate::model::frame::{tier, Tier};
    let first = frames
        .iter()
        .position(|frame| tier(frame) != Tier::Internal)
        .unwrap_or(0);
    frames.into_iter().skip(first).collect()
}
