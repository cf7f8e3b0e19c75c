//! The task side of a check: tokio tasks that outlive their test.
//!
//! Three levels of detail, chosen by how the user builds (see `probe::tasks`): a count, spawn
//! sites, async traces. A task dump is guarded by a watchdog (a dump on a multi_thread runtime can
//! hang, and tokio's own timer stalls while it runs); a dump that does not finish in time degrades
//! to the level below.
//!
//! Tasks are checked inside the runtime, before it shuts down: dropping a runtime drops its tasks.

use std::collections::HashSet;
use std::sync::Arc;

use crate::config::Settings;
use crate::model::{Hidden, TaskCount};
#[cfg(tokio_unstable)]
use crate::model::{Kind, SpawnSite, Stack, Survivor};
use crate::options::Options;
#[cfg(tokio_unstable)]
use crate::probe::tasks::task_id;
use crate::probe::tasks::{current_probe, Probe};

/// How long a task dump may take before the report goes on without it.
#[cfg(all(tokio_unstable, feature = "taskdump"))]
const DUMP_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// How many dumps a report may take to find every survivor's trace.
#[cfg(all(tokio_unstable, feature = "taskdump"))]
const DUMP_ATTEMPTS: usize = 5;

/// Which tasks a check owns: those of the current runtime, minus a baseline and the caller.
pub(crate) struct TaskScope {
    handle: tokio::runtime::Handle,
    #[cfg_attr(not(tokio_unstable), allow(dead_code))]
    probe: Option<Arc<Probe>>,
    baseline_ids: HashSet<u64>,
    baseline_count: usize,
}

impl TaskScope {
    /// Tasks alive at the test's entry (stable builds, which have no task ids).
    pub(crate) fn set_baseline_count(&mut self, count: usize) {
        self.baseline_count = count;
    }

    /// The current runtime's tasks, all of them counting (a plain test without entry snapshot).
    pub(crate) fn unentered() -> Option<TaskScope> {
        let handle = tokio::runtime::Handle::try_current().ok()?;
        Some(TaskScope {
            baseline_count: 0,
            baseline_ids: HashSet::new(),
            probe: current_probe(),
            handle,
        })
    }
}

/// What the task side of a check found.
#[derive(Default)]
pub(crate) struct TaskFindings {
    #[cfg(tokio_unstable)]
    pub(crate) survivors: Vec<Survivor>,
    pub(crate) count: Option<TaskCount>,
    pub(crate) hidden: Vec<Hidden>,
    pub(crate) notes: Vec<String>,
    /// Why the settle ended early, if it did.
    pub(crate) early: Option<String>,
}

impl TaskFindings {
    pub(crate) fn is_empty(&self) -> bool {
        #[cfg(tokio_unstable)]
        if !self.survivors.is_empty() {
            return false;
        }
        self.count.as_ref().is_none_or(|count| count.alive == 0)
    }

    /// Moves the findings into a report.
    pub(crate) fn into_report(self, report: &mut crate::report::Report) {
        #[cfg(tokio_unstable)]
        report.survivors.extend(self.survivors);
        report.task_count = self.count.filter(|count| count.alive > 0);
        report.hidden.extend(self.hidden);
        report.notes.extend(self.notes);
        report.early = report.early.take().or(self.early);
    }
}

/// One look: the survivors' ids (or, without ids, one entry per surviving task).
fn look(scope: &TaskScope, options: &Options) -> Vec<u64> {
    let own = tokio::task::try_id();
    #[cfg(tokio_unstable)]
    if let Some(probe) = &scope.probe {
        let own = own.map(task_id);
        let baseline = options.baseline.as_deref();
        return probe
            .live_ids()
            .filter(|id| Some(*id) != own && !scope.baseline_ids.contains(id))
            .filter(|id| !baseline.is_some_and(|b| b.tasks.contains(id)))
            .filter(|id| !hidden_by_spawn_site(probe, *id, options))
            .collect();
    }
    let alive = scope
        .handle
        .metrics()
        .num_alive_tasks()
        .saturating_sub(usize::from(own.is_some()));
    let baseline = options
        .baseline
        .as_deref()
        .and_then(|b| b.task_count)
        .unwrap_or(0);
    let _ = &scope.baseline_ids;
    vec![0; alive.saturating_sub(scope.baseline_count.max(baseline))]
}

/// Whether an `ignore_spawn_site` rule hides task `id`: its spawn location is known, so this is
/// cheap enough for every settle look, and a task such a rule hides costs no settle time.
#[cfg(tokio_unstable)]
fn hidden_by_spawn_site(probe: &Probe, id: u64, options: &Options) -> bool {
    use crate::rules::IgnoreKind;
    let rules = || {
        options
            .rules
            .iter()
            .filter(|rule| rule.kind == IgnoreKind::SpawnSite)
    };
    if rules().next().is_none() {
        return false;
    }
    let Some(location) = probe
        .live
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(&id)
        .map(|s| s.location)
    else {
        return false;
    };
    let at = format!(
        "{}:{}",
        crate::model::frame::location::relative_path(location.file()),
        location.line()
    );
    let subject = crate::rules::Subject {
        name: None,
        kernel_name: false,
        stack: None,
        created_at: &[],
        spawn_site: Some(&at),
    };
    rules().any(|rule| rule.matches(&subject))
}

/// Settles (asynchronously) and reports the tasks of `scope` still alive.
pub(crate) async fn find(scope: &TaskScope, options: &Options, settings: &Settings) -> TaskFindings {
    let root = crate::probe::lineage::current();
    let settled = super::settle::settle_async(
        settings.settle,
        settings.early,
        || look(scope, options),
        || super::early::scope_tids(&root, true),
    )
    .await;
    if settled.left.is_empty() {
        return TaskFindings::default();
    }
    let mut findings = describe(scope, options, settled.left).await;
    findings.early = settled.early.map(super::early::describe);
    findings
}

#[cfg(not(tokio_unstable))]
async fn describe(_scope: &TaskScope, _options: &Options, survivors: Vec<u64>) -> TaskFindings {
    TaskFindings {
        count: Some(TaskCount {
            alive: survivors.len(),
        }),
        ..TaskFindings::default()
    }
}

#[cfg(tokio_unstable)]
async fn describe(scope: &TaskScope, options: &Options, ids: Vec<u64>) -> TaskFindings {
    let Some(probe) = &scope.probe else {
        return TaskFindings {
            count: Some(TaskCount { alive: ids.len() }),
            notes: vec![
                "spawn sites are recorded only on runtimes that leakcheck builds: use \
                         `#[leak_test]` on the async test (above `#[tokio::test]`, if any)"
                    .into(),
            ],
            ..TaskFindings::default()
        };
    };
    type Spawn = (Option<&'static std::panic::Location<'static>>, Box<[usize]>);
    let spawned: Vec<Spawn> = {
        let live = probe.live.lock().unwrap_or_else(|e| e.into_inner());
        ids.iter()
            .map(|id| match live.get(id) {
                Some(spawned) => (Some(spawned.location), spawned.backtrace.clone()),
                None => (None, Box::default()),
            })
            .collect()
    };
    let (mut traces, mut notes) = dump(scope, &ids).await;
    let mut findings = TaskFindings::default();
    for (id, (location, backtrace)) in ids.iter().zip(spawned) {
        let (name, site) = location.map(spawn_site).unzip();
        let leaves = traces.remove(id);
        let stack = match &leaves {
            Some(leaves) => Stack::Frames(leaves.concat()),
            None if cfg!(feature = "taskdump") => Stack::Missing(
                "not in the task dump (a multi_thread dump can miss a task that is being woken: \
                 tokio issue #7478)"
                    .into(),
            ),
            None => Stack::Missing(
                "no async trace: enable leakcheck's `taskdump` feature (with `--cfg tokio_unstable`)".into(),
            ),
        };
        let mut survivor = Survivor {
            kind: Kind::Task,
            name: name.flatten(),
            id: *id,
            kernel: None,
            stack,
            created_at: super::threads::strip_creation_frames(crate::probe::symbols::resolve(&backtrace)),
            creator: None,
            test: None,
            spawn_site: site,
            hint: None,
            process: None,
            wakes_in: None,
            parent: None,
        };
        let subject = crate::rules::Subject {
            name: None,
            kernel_name: false,
            stack: match &survivor.stack {
                Stack::Frames(frames) => Some(frames),
                Stack::Missing(_) => None,
            },
            created_at: &survivor.created_at,
            spawn_site: survivor.spawn_site.as_ref().map(|site| site.at.as_str()),
        };
        if let Some(rule) = options.rules.iter().find(|rule| rule.matches(&subject)) {
            findings.hidden.push(Hidden {
                rule: rule.describe(),
                survivor,
            });
            continue;
        }
        survivor.hint = leaves
            .as_deref()
            .and_then(crate::report::hints::for_leaves)
            .or_else(|| crate::report::hints::for_survivor(&survivor));
        findings.survivors.push(survivor);
    }
    let parents = probe.parents.lock().unwrap_or_else(|e| e.into_inner()).clone();
    roots_and_dependents(&mut findings.survivors, &parents);
    findings.notes.append(&mut notes);
    findings
}

/// Links each survivor to its nearest leaked ancestor (spawned, through tasks that may have
/// ended, from code running in another survivor): a dependent ends with its root, so its hint
/// sends the reader there. A root, spawned from the test's own code, gets the fix that stops it
/// from the test: keep the `JoinHandle` its spawn returns and `abort()` it.
#[cfg(tokio_unstable)]
fn roots_and_dependents(survivors: &mut [Survivor], parents: &std::collections::HashMap<u64, u64>) {
    use crate::model::Hint;
    let leaked: HashSet<u64> = survivors.iter().map(|survivor| survivor.id).collect();
    let ancestor = |mut id: u64| {
        let mut steps = 0;
        while let Some(&parent) = parents.get(&id) {
            if leaked.contains(&parent) {
                return Some(parent);
            }
            id = parent;
            steps += 1;
            if steps > parents.len() {
                break;
            }
        }
        None
    };
    for survivor in survivors.iter_mut() {
        survivor.parent = ancestor(survivor.id);
        if let Some(root) = survivor.parent {
            survivor.hint = Some(Hint {
                cause: format!(
                    "spawned from code running in task {root}, which leaked too: it waits for \
                     something that task owns (a `Notify`, a channel, a shutdown flag) and ends \
                     when that task ends"
                ),
                fix: format!("fix task {root}, the root: this task ends with it"),
                evidence: format!("task {root} was running when this task was spawned (tokio's spawn hook)"),
            });
        }
    }
    for index in 0..survivors.len() {
        if survivors[index].parent.is_some() {
            continue;
        }
        let id = survivors[index].id;
        let dependents = survivors.iter().filter(|other| other.parent == Some(id)).count();
        let survivor = &mut survivors[index];
        // Only the user's own spawn returned a handle the test could keep.
        let spawned_by_user = survivor
            .created_at
            .iter()
            .find(|frame| crate::model::frame::tier(frame) != crate::model::frame::Tier::Internal)
            .is_some_and(|frame| !frame.library);
        let Some(site) = survivor
            .spawn_site
            .as_ref()
            .filter(|_| spawned_by_user)
            .map(|site| site.at.clone())
        else {
            continue;
        };
        let stop = format!(
            "keep the `JoinHandle` that the spawn at {site} returns and call `abort()` on it (or \
             send the task its shutdown signal) when the test ends{}",
            if dependents > 0 {
                "; the tasks spawned from it end with it"
            } else {
                ""
            }
        );
        let hint = survivor.hint.get_or_insert_with(|| Hint {
            cause: "a task the test spawned and never stopped: its `JoinHandle` was dropped or \
                    kept without `abort()`, and nothing tells it to end"
                .into(),
            fix: String::new(),
            evidence: format!("spawned at {site}, still alive at the end of the test"),
        });
        hint.fix = if hint.fix.is_empty() {
            stop
        } else {
            format!("{stop}; or: {}", hint.fix)
        };
        if dependents > 0 {
            hint.evidence.push_str(&format!(
                "; {dependents} leaked {} spawned from it",
                Kind::Task.noun(dependents)
            ));
        }
    }
}

/// A task's spawn site, and its name: tokio keeps a `Builder`'s name only in a `tracing` span
/// (neither the spawn hook's `TaskMeta` nor a task dump has it), so it is read from the source at
/// the spawn location: a string literal is the name, another expression is shown as such.
#[cfg(tokio_unstable)]
fn spawn_site(location: &'static std::panic::Location<'static>) -> (Option<String>, SpawnSite) {
    use crate::probe::source::{task_name, BuilderName};
    let (name, named_by) = match task_name(location.file(), location.line(), location.column()) {
        Some(BuilderName::Literal(name)) => (Some(name), None),
        Some(BuilderName::Expression(expression)) => (None, Some(expression)),
        None => (None, None),
    };
    let at = format!(
        "{}:{}",
        crate::model::frame::location::relative_path(location.file()),
        location.line()
    );
    (name, SpawnSite { at, named_by })
}

/// Async traces of `ids`, by id, from a task dump under a watchdog.
#[cfg(all(tokio_unstable, feature = "taskdump"))]
async fn dump(
    scope: &TaskScope,
    ids: &[u64],
) -> (
    std::collections::HashMap<u64, Vec<Vec<crate::model::Frame>>>,
    Vec<String>,
) {
    use futures::future::{select, Either};
    let mut traces = std::collections::HashMap::new();
    let watchdog = super::settle::Delay::new(DUMP_TIMEOUT);
    let mut watchdog = std::pin::pin!(watchdog);
    // A dump of a multi_thread runtime can miss tasks that are being woken meanwhile (tokio issue
    // #7478): dump again, within the same deadline, until every survivor has its trace.
    for _ in 0..DUMP_ATTEMPTS {
        let dump = std::pin::pin!(scope.handle.dump());
        let dump = match select(dump, watchdog.as_mut()).await {
            Either::Left((dump, _)) => dump,
            Either::Right(_) => {
                let note = format!(
                    "the task dump did not finish within {DUMP_TIMEOUT:?}; tasks are shown without async traces"
                );
                return (traces, vec![note]);
            }
        };
        for task in dump.tasks().iter() {
            let id = task_id(task.id());
            if ids.contains(&id) && !traces.contains_key(&id) {
                traces.insert(id, crate::probe::tasks::trace_leaves(task.trace()));
            }
        }
        if ids.iter().all(|id| traces.contains_key(id)) {
            break;
        }
    }
    (traces, Vec::new())
}

#[cfg(all(tokio_unstable, not(feature = "taskdump")))]
async fn dump(
    _scope: &TaskScope,
    _ids: &[u64],
) -> (
    std::collections::HashMap<u64, Vec<Vec<crate::model::Frame>>>,
    Vec<String>,
) {
    (Default::default(), Vec::new())
}
