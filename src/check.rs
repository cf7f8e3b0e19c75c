//! The check: settle on the cheap look, then describe what is left once, apply the rules, and
//! turn the findings into a verdict.
//!
//! The path of one check: a front end (the attribute, `verify_none*`, `check_binary!`) resolves
//! its [`Settings`] once (`Options::settings`), builds a [`threads::Scope`] (and, in async code, a
//! [`tasks::TaskScope`]), then calls [`check_threads`] (and [`tasks::find`]) with both; every
//! function below reads the settle deadline, verbosity and report detail from that one value.
//! [`settle::settle`] repeats [`threads::candidates`], a registry lookup
//! that costs nothing on a clean pass, until it is empty or the deadline passes; only then are
//! the survivors described (kernel state, stack capture, symbols), filtered by the rules and
//! rendered into a [`Report`]. [`merge`] joins the thread and task sides into one verdict.

pub(crate) mod children;
pub(crate) mod early;
pub(crate) mod ownership;
pub(crate) mod settle;
#[cfg(feature = "tokio")]
pub(crate) mod tasks;
pub(crate) mod threads;
pub(crate) mod untracked;
pub(crate) mod wait;

use crate::config::Settings;
use crate::model::Hidden;
use crate::options::Options;
use crate::report::error::LeakError;
use crate::report::Report;
#[cfg(feature = "tokio")]
use tasks::TaskFindings;
use threads::Scope;
use wait::WaitSamples;

/// An empty report of this check, with the settings it ran with.
pub(crate) fn report(test: &str, options: &Options, settings: &Settings) -> Report {
    Report {
        test: test.to_string(),
        location: options.location.map(|l| (l.file().to_string(), l.line())),
        settle: settings.settle,
        full_stacks: settings.full_stacks,
        verbose: settings.verbose,
        ..Report::default()
    }
}

/// The thread side of a check: settle on the cheap look, then describe what is left once and
/// apply the ignore rules (stack capture and symbol resolution are paid only by a leak).
pub(crate) fn check_threads(
    scope: &Scope,
    options: &Options,
    settings: &Settings,
    test: &str,
) -> Result<(), LeakError> {
    let mut samples = WaitSamples::default();
    let mut looks = Looks::new(options, settings);
    let settled = settle::settle(
        settings.settle,
        settings.early,
        || looks.look(scope, &mut samples),
        || early::scope_tids(&scope.root, false),
    );
    if settled.left.is_empty() && !settings.verbose {
        return Ok(());
    }
    // Describe everything still alive, so a verbose report can list what the rules hid.
    report_threads(
        scope,
        options,
        settings,
        threads::candidates(scope, options),
        test,
        &samples,
        settled.early,
    )
}

/// [`check_threads`] for async code: settles without blocking the runtime.
#[cfg(feature = "tokio")]
pub(crate) async fn check_threads_async(
    scope: &Scope,
    options: &Options,
    settings: &Settings,
    test: &str,
) -> Result<(), LeakError> {
    let mut samples = WaitSamples::default();
    let mut looks = Looks::new(options, settings);
    let settled = settle::settle_async(
        settings.settle,
        settings.early,
        || looks.look(scope, &mut samples),
        || early::scope_tids(&scope.root, true),
    )
    .await;
    if settled.left.is_empty() && !settings.verbose {
        return Ok(());
    }
    report_threads(
        scope,
        options,
        settings,
        threads::candidates(scope, options),
        test,
        &samples,
        settled.early,
    )
}

/// The settle loop's looks at the thread side: a survivor that an ignore rule hides is not one to
/// wait for. Rules on names and creation sites apply on every look ([`unhidden_candidates`]);
/// rules on the current stack need a capture, made once, when candidates have lingered past
/// [`STACK_RULES_AFTER`], and only if such a rule exists. A blocked survivor that such a rule
/// hides needs none of this: the early verdict ends the wait, and the report hides it.
struct Looks<'a> {
    options: &'a Options,
    settings: &'a Settings,
    started: std::time::Instant,
    /// Threads hidden by a stack rule, once the stacks were captured.
    hidden_by_stack: Option<Vec<i32>>,
}

/// How long candidates linger before rules on their stacks are applied in the settle loop.
const STACK_RULES_AFTER: std::time::Duration = std::time::Duration::from_millis(100);

impl<'a> Looks<'a> {
    fn new(options: &'a Options, settings: &'a Settings) -> Looks<'a> {
        let stack_rules = options.rules.iter().any(crate::rules::Rule::reads_stack);
        Looks {
            options,
            settings,
            started: std::time::Instant::now(),
            // `LEAKCHECK_EARLY=off` waits for hidden survivors too, as before.
            hidden_by_stack: (!stack_rules || !settings.capture_stacks || settings.early.is_none())
                .then(Vec::new),
        }
    }

    /// One look; takes the first kernel reading of candidates not seen before (the start of their
    /// settle window); a look that found nothing reads nothing.
    fn look(&mut self, scope: &Scope, samples: &mut WaitSamples) -> Vec<threads::Candidate> {
        let mut candidates = unhidden_candidates(scope, self.options);
        if !candidates.is_empty()
            && self.hidden_by_stack.is_none()
            && self.started.elapsed() >= STACK_RULES_AFTER
        {
            let (_, hidden) = threads::describe(
                &candidates,
                self.options,
                self.settings,
                samples,
                scope.capture_policy(),
            );
            self.hidden_by_stack = Some(hidden.iter().map(|hidden| hidden.survivor.id as i32).collect());
        }
        let hidden = self.hidden_by_stack.as_deref().unwrap_or_default();
        candidates.retain(|candidate| !candidate.tid().is_some_and(|tid| hidden.contains(&tid)));
        samples.record(candidates.iter().filter_map(threads::Candidate::tid));
        candidates
    }
}

/// The candidates, or none if rules that need no stack hide all of them.
pub(crate) fn unhidden_candidates(scope: &Scope, options: &Options) -> Vec<threads::Candidate> {
    let candidates = threads::candidates(scope, options);
    if candidates
        .iter()
        .all(|candidate| threads::hidden_without_stack(candidate, options))
    {
        return Vec::new();
    }
    candidates
}

/// Describes settled candidates; those that finished meanwhile are dropped.
pub(crate) fn report_threads(
    scope: &Scope,
    options: &Options,
    settings: &Settings,
    candidates: Vec<threads::Candidate>,
    test: &str,
    samples: &WaitSamples,
    early: Option<std::time::Duration>,
) -> Result<(), LeakError> {
    if candidates.is_empty() {
        return Ok(());
    }
    let (mut survivors, mut hidden) =
        threads::describe(&candidates, options, settings, samples, scope.capture_policy());
    let still_alive = threads::candidates(scope, options);
    survivors.retain(|survivor| still_alive.iter().any(|c| c.tid() == Some(survivor.id as i32)));
    if settings.verbose {
        // What ownership did not count (singletons, work of shared pools), listed with why.
        let others = threads::not_owned(scope, options);
        let candidates: Vec<_> = others.iter().map(|(candidate, _)| candidate.clone()).collect();
        // Not the test's own threads: capture only where it changes nothing.
        let (described, described_hidden) = threads::describe(
            &candidates,
            options,
            settings,
            samples,
            crate::probe::stack::Policy::Transparent,
        );
        hidden.extend(described_hidden);
        for survivor in described {
            let why = others
                .iter()
                .find(|(candidate, _)| candidate.tid() == Some(survivor.id as i32))
                .map_or("not counted", |(_, why)| why.describe());
            hidden.push(Hidden {
                survivor,
                rule: format!("not counted: {why}"),
            });
        }
    }
    let mut report = report(test, options, settings);
    report.survivors = survivors;
    report.hidden = hidden;
    report.notes.extend(scope.mode_note());
    report.early = early.map(early::describe);
    finish(report)
}

/// Combines a thread verdict and task findings into one verdict.
#[cfg(feature = "tokio")]
pub(crate) fn merge(
    threads: Result<(), LeakError>,
    tasks: TaskFindings,
    options: &Options,
    settings: &Settings,
    test: &str,
) -> Result<(), LeakError> {
    if tasks.is_empty() {
        return threads;
    }
    let mut report = match threads {
        Ok(()) => report(test, options, settings),
        Err(LeakError {
            kind: crate::report::error::ErrorKind::Leak(report),
        }) => *report,
        Err(other) => return Err(other),
    };
    tasks.into_report(&mut report);
    report.survivors.sort_by_key(|survivor| survivor.kind);
    finish(report)
}

/// Adds what a child-process check found to a verdict: running children fail it; zombies only
/// add a note to a report that fails anyway.
pub(crate) fn merge_children(
    verdict: Result<(), LeakError>,
    children: children::ChildFindings,
    options: &Options,
    settings: &Settings,
    test: &str,
) -> Result<(), LeakError> {
    if children.survivors.is_empty() && children.hidden.is_empty() {
        return match verdict {
            Err(LeakError {
                kind: crate::report::error::ErrorKind::Leak(mut report),
            }) => {
                report.notes.extend(children::zombie_note(&children.zombies));
                Err(LeakError::leak(*report))
            }
            other => other,
        };
    }
    let mut report = match verdict {
        Ok(()) => report(test, options, settings),
        Err(LeakError {
            kind: crate::report::error::ErrorKind::Leak(report),
        }) => *report,
        Err(other) => return Err(other),
    };
    report.survivors.extend(children.survivors);
    report.hidden.extend(children.hidden);
    report.notes.extend(children.notes);
    report.notes.extend(children::zombie_note(&children.zombies));
    report.survivors.sort_by_key(|survivor| survivor.kind);
    finish(report)
}

/// Writes the JSON line for a leak and turns the report into the verdict. A report whose
/// survivors were all hidden by rules is a pass.
fn finish(report: Report) -> Result<(), LeakError> {
    if !report.is_leak() {
        return Ok(());
    }
    if let Err(message) = report.write_json() {
        eprintln!("{message}");
    }
    report.annotate();
    Err(LeakError::leak(report))
}
