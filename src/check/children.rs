//! Child-process survivors: which children a check owns, which still run, and what each is.
//!
//! Two modes, as for threads ([`super::threads`]):
//!
//! - **Lineage** (Linux with glibc, the interposers in effect; Windows, the `CreateProcessW` import
//!   hooked): a check owns the children that its
//!   root thread or any thread descending from it started (`probe::children` indexes each child
//!   under every ancestor of its creator), minus those alive at entry. A clean pass is one lookup
//!   and reads no `/proc`.
//! - **Process diff** (the fallback): a check owns every child of the process that was not there
//!   at its entry snapshot (`probe::sys::child_pids`: `/proc` on Linux, a Toolhelp snapshot on
//!   Windows). Reports say so.
//!
//! A child that still runs after the settle deadline fails the check. A child that exited but was
//! never waited for (a zombie) does not: it holds no port, file or CPU, only a process-table slot,
//! and tokio reaps the children it killed on drop lazily (while a runtime driver runs), so a
//! correct `kill_on_drop(true)` test would otherwise fail at random. Zombies are named in the note
//! of a report that fails for another reason.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::config::Settings;
use crate::model::{Hidden, Kind, ProcessInfo, Survivor};
use crate::options::Options;
use crate::probe::children::{self, Child, Liveness};
use crate::probe::lineage::{self, Node};
use crate::probe::{symbols, sys};
use crate::rules::IgnoreKind;

/// How long the kill after a report waits for a child to exit.
const KILL_PATIENCE: Duration = Duration::from_secs(1);

/// Which child processes a check owns.
pub(crate) struct ChildScope {
    /// The thread whose (transitive) children are checked.
    pub(crate) root: Arc<Node>,
    /// Children (registry uids) alive when the scope was entered.
    pub(crate) baseline: Vec<u64>,
    /// The process's children at entry, in the process-diff fallback.
    pub(crate) entry_pids: Option<HashSet<i32>>,
}

impl ChildScope {
    /// A scope rooted at `root` (the calling thread's node), with the children it already has as baseline.
    pub(crate) fn enter_at(root: Arc<Node>) -> ChildScope {
        let lineage_mode = lineage_mode();
        ChildScope {
            baseline: if lineage_mode && children::any_below(&root) {
                children::descendants_of(&root)
                    .iter()
                    .map(|(child, _)| child.uid)
                    .collect()
            } else {
                Vec::new()
            },
            root,
            entry_pids: (!lineage_mode).then(|| sys::child_pids().unwrap_or_default().into_iter().collect()),
        }
    }

    /// What [`enter_at`](Self::enter_at) makes for a root with no child recorded at entry, in
    /// lineage mode (see [`Scope::owned_nothing_at_entry`](super::threads::Scope::owned_nothing_at_entry)).
    pub(crate) fn owned_nothing_at_entry(root: Arc<Node>) -> ChildScope {
        ChildScope {
            root,
            baseline: Vec::new(),
            entry_pids: None,
        }
    }

    /// A scope rooted at the calling thread without an entry snapshot: all it started counts.
    pub(crate) fn unentered() -> ChildScope {
        ChildScope {
            root: lineage::current_named(),
            baseline: Vec::new(),
            entry_pids: (!lineage_mode()).then(HashSet::new),
        }
    }

    /// Whether this scope certainly owns no child process now (lineage mode, and the root's
    /// thread and its descendants have none recorded): one load. `false` means "look".
    pub(crate) fn nothing_alive(&self) -> bool {
        self.entry_pids.is_none() && !children::any_below(&self.root)
    }

    /// The mode note a report carries, if any.
    pub(crate) fn mode_note(&self) -> Option<String> {
        self.entry_pids.as_ref().map(|_| {
            "leakcheck compared the process's child processes before and after instead of recording \
             which thread started each (`posix_spawn`/`fork` or `CreateProcessW` could not be hooked \
             in this build, or `LEAKCHECK_LINEAGE=off`): under parallel `cargo test` this can blame children of \
             other tests; the creation site is known only where the interposers recorded it."
                .to_string()
        })
    }
}

/// Whether children are attributed by the interposers: the threads' lineage mode, where the
/// platform hooks the creation of child processes too (`probe::sys::children_hooked`).
fn lineage_mode() -> bool {
    super::threads::lineage_mode() && sys::children_hooked()
}

/// A child a look found, running or exited unwaited.
#[derive(Clone)]
pub(crate) struct Candidate {
    pub(crate) pid: i32,
    pub(crate) child: Option<Arc<Child>>,
    pub(crate) zombie: bool,
}

impl Candidate {
    /// Its arguments: recorded at spawn, else read from `/proc`.
    fn argv(&self) -> Vec<String> {
        match &self.child {
            Some(child) if !child.argv.is_empty() => child.argv.clone(),
            _ => sys::child_cmdline(self.pid),
        }
    }
}

/// Every child `scope` owns that is not reaped yet (running and zombies), before ignore rules.
pub(crate) fn look(scope: &ChildScope, options: &Options) -> Vec<Candidate> {
    let baseline = options.baseline.as_deref();
    let in_baseline = |pid: i32| baseline.is_some_and(|b| b.children.contains(&pid));
    if let Some(entry_pids) = &scope.entry_pids {
        return sys::child_pids()
            .unwrap_or_default()
            .into_iter()
            .filter(|pid| !entry_pids.contains(pid) && !in_baseline(*pid))
            .map(|pid| Candidate {
                pid,
                child: children::by_pid(pid),
                zombie: sys::child_stat(pid).is_some_and(|stat| stat.state == 'Z'),
            })
            .collect();
    }
    children::descendants_of(&scope.root)
        .into_iter()
        .filter(|(child, _)| !scope.baseline.contains(&child.uid) && !in_baseline(child.pid))
        .map(|(child, liveness)| Candidate {
            pid: child.pid,
            zombie: liveness == Liveness::Zombie,
            child: Some(child),
        })
        .collect()
}

/// The cheap settle look: running children that no `ignore_process` rule hides.
pub(crate) fn running(scope: &ChildScope, options: &Options) -> Vec<Candidate> {
    look(scope, options)
        .into_iter()
        .filter(|candidate| !candidate.zombie && hiding_rule(candidate, options).is_none())
        .collect()
}

/// The `ignore_process` rule that hides this child, if any.
fn hiding_rule(candidate: &Candidate, options: &Options) -> Option<String> {
    if !options.rules.iter().any(|rule| rule.kind == IgnoreKind::Process) {
        return None;
    }
    let argv = candidate.argv();
    options
        .rules
        .iter()
        .find(|rule| rule.matches_process(&argv))
        .map(|rule| rule.describe())
}

/// What a child check found: the failures, what rules hid, and the zombies (a note only).
#[derive(Default)]
pub(crate) struct ChildFindings {
    pub(crate) survivors: Vec<Survivor>,
    pub(crate) hidden: Vec<Hidden>,
    /// Described only if the verdict fails anyway (then they are named in a note).
    pub(crate) zombies: Vec<Candidate>,
    pub(crate) notes: Vec<String>,
}

/// Settles on [`running`] until `settle` after `since` (when the check began: the thread and
/// task checks before it already gave finishing work that long, so a test leaking both a thread
/// and a child does not wait twice), then describes what is left (and the zombies) once; kills
/// and reaps the survivors afterwards unless told not to.
pub(crate) fn find(
    scope: &ChildScope,
    options: &Options,
    settings: &Settings,
    since: Instant,
) -> ChildFindings {
    let settle = remaining(settings.settle, since);
    // Children settle as before: their waits are not read (see `early`).
    let left = super::settle::settle(settle, None, || running(scope, options), || None).left;
    conclude(scope, options, settings, left)
}

/// What is left of the settle deadline that began at `since`, but at least 100 ms (or `settle`
/// if shorter): a child killed at the very end (a `kill_on_drop` child dropped when the runtime
/// shut down) still gets time to exit.
fn remaining(settle: Duration, since: Instant) -> Duration {
    settle
        .saturating_sub(since.elapsed())
        .max(settle.min(Duration::from_millis(100)))
}

/// [`find`] for async code: settles without blocking the runtime.
#[cfg(feature = "tokio")]
pub(crate) async fn find_async(
    scope: &ChildScope,
    options: &Options,
    settings: &Settings,
    since: Instant,
) -> ChildFindings {
    let settle = remaining(settings.settle, since);
    let left = super::settle::settle_async(settle, None, || running(scope, options), || None)
        .await
        .left;
    conclude(scope, options, settings, left)
}

/// The whole-binary form: every running child that a test's thread (or a thread descending from
/// one) started, settled, described (each names its test), then killed unless told not to.
pub(crate) fn find_started_by_tests(options: &Options, settings: &Settings) -> ChildFindings {
    let look = || -> Vec<Candidate> {
        children::all()
            .into_iter()
            // libtest's test threads are created by the main thread (a root): a creator with a
            // parent is a test thread or a thread descending from one.
            .filter(|(child, _)| child.creator.parent.is_some())
            .filter(|(child, _)| {
                !options
                    .baseline
                    .as_deref()
                    .is_some_and(|b| b.children.contains(&child.pid))
            })
            .map(|(child, liveness)| Candidate {
                pid: child.pid,
                zombie: liveness == Liveness::Zombie,
                child: Some(child),
            })
            .collect()
    };
    let left = super::settle::settle(
        settings.settle,
        None,
        || {
            look()
                .into_iter()
                .filter(|c| !c.zombie && hiding_rule(c, options).is_none())
                .collect()
        },
        || None,
    )
    .left;
    if left.is_empty() {
        return ChildFindings::default();
    }
    sort(look(), options, settings, None)
}

fn conclude(
    scope: &ChildScope,
    options: &Options,
    settings: &Settings,
    left: Vec<Candidate>,
) -> ChildFindings {
    if left.is_empty() && !settings.verbose {
        // Zombies are kept undescribed: a note if the verdict fails for another reason.
        let zombies = look(scope, options).into_iter().filter(|c| c.zombie).collect();
        return ChildFindings {
            zombies,
            ..ChildFindings::default()
        };
    }
    sort(look(scope, options), options, settings, scope.mode_note())
}

/// Describes candidates into failures, hidden and zombies, and kills the failures.
fn sort(
    candidates: Vec<Candidate>,
    options: &Options,
    settings: &Settings,
    mode_note: Option<String>,
) -> ChildFindings {
    let mut findings = ChildFindings::default();
    for candidate in candidates {
        if candidate.zombie {
            findings.zombies.push(candidate);
            continue;
        }
        let survivor = describe(&candidate);
        if let Some(rule) = hiding_rule(&candidate, options) {
            findings.hidden.push(Hidden { survivor, rule });
        } else {
            findings.survivors.push(survivor);
        }
    }
    if findings.survivors.is_empty() {
        return findings;
    }
    findings.notes.extend(mode_note);
    findings.notes.extend(kill(&findings.survivors, settings));
    findings
}

/// Describes one child: command line, state and age from `/proc`, where and by whom it was
/// started, and the hint.
pub(crate) fn describe(candidate: &Candidate) -> Survivor {
    let stat = sys::child_stat(candidate.pid);
    let child = candidate.child.as_deref();
    let age = match (child, stat) {
        (Some(child), _) if child.started != Duration::ZERO => {
            sys::process_clock().checked_sub(child.started)
        }
        (_, Some(stat)) => sys::process_clock().checked_sub(stat.started),
        _ => None,
    };
    let argv = candidate.argv();
    let info = ProcessInfo {
        state: stat.map(|stat| stat.state).or(candidate.zombie.then_some('Z')),
        age,
        via: child.map(|child| child.via),
        argv,
    };
    let mut survivor = Survivor {
        kind: Kind::Process,
        name: info.program().map(String::from),
        id: candidate.pid as u64,
        kernel: None,
        stack: crate::model::Stack::Missing("a child process has no stack in this process".into()),
        created_at: child
            .map(|child| symbols::resolve(&child.created_at))
            .unwrap_or_default(),
        creator: child.and_then(|child| child.creator.name().map(String::from)),
        test: child
            .and_then(|child| child.creator.test_thread())
            .and_then(|thread| thread.name().map(String::from)),
        spawn_site: None,
        hint: None,
        process: Some(info),
        wakes_in: None,
        parent: None,
    };
    survivor.hint = crate::report::children::hint(&survivor);
    survivor
}

/// Kills and reaps the reported children unless `Options::kill_children(false)` or
/// `LEAKCHECK_KILL_CHILDREN=off`; returns the note saying what was done.
fn kill(survivors: &[Survivor], settings: &Settings) -> Option<String> {
    if !settings.kill_children {
        return Some(
            "the leaked child processes were left running (`LEAKCHECK_KILL_CHILDREN=off` or \
             `Options::kill_children(false)`)"
                .into(),
        );
    }
    let mut killed = Vec::new();
    for survivor in survivors {
        let pid = survivor.id as i32;
        let started = children::by_pid(pid).map(|child| child.started);
        if sys::kill_child(pid, started, KILL_PATIENCE) {
            killed.push(pid.to_string());
        }
    }
    (!killed.is_empty()).then(|| {
        format!(
            "leakcheck {} the leaked child process{} (pid {}) after describing {}, so the run \
             leaves nothing behind; `LEAKCHECK_KILL_CHILDREN=off` or `Options::kill_children(false)` \
             leaves them running",
            sys::KILLED,
            if killed.len() == 1 { "" } else { "es" },
            killed.join(", "),
            if killed.len() == 1 { "it" } else { "them" },
        )
    })
}

/// The note naming zombies, for a report that fails for another reason.
pub(crate) fn zombie_note(zombies: &[Candidate]) -> Option<String> {
    if zombies.is_empty() {
        return None;
    }
    let lines: Vec<String> = zombies
        .iter()
        .map(|zombie| crate::report::children::zombie_line(&describe(zombie)))
        .collect();
    Some(format!(
        "{} child process{} exited but {} never waited for (a zombie; not a failure: it holds no \
         resource but a process-table slot, and tokio reaps killed children lazily): {}",
        zombies.len(),
        if zombies.len() == 1 { "" } else { "es" },
        if zombies.len() == 1 { "was" } else { "were" },
        lines.join("; ")
    ))
}
