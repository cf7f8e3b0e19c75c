//! The leak report: survivors grouped by where they are stuck and where they came from, rendered
//! like a compiler error (this file), as one JSON line ([`json`]), with cause-and-fix hints
//! ([`hints`]). Reads the model only.

pub(crate) mod children;
pub(crate) mod error;
mod github;
pub(crate) mod hints;
mod json;
mod members;
mod names;
pub(crate) mod unchecked;
mod wait_text;

use std::collections::BTreeMap;
use std::fmt::{self, Write as _};
use std::time::Duration;

use crate::model::frame;
use crate::model::{Frame, Hidden, Kind, Stack, Survivor, TaskCount};

/// What a stable build's report says about getting more detail: with leakcheck's `taskdump`
/// feature already on, only the cfg is missing.
pub(crate) const MORE_DETAIL: &str = if cfg!(feature = "taskdump") {
    "for spawn sites and async stacks, build with `--cfg tokio_unstable` (leakcheck's `taskdump` \
feature is already on): `RUSTFLAGS=\"--cfg tokio_unstable\" cargo test`, or in `.cargo/config.toml`: \
`[build] rustflags = [\"--cfg\", \"tokio_unstable\"]`"
} else {
    "for spawn sites, build with `--cfg tokio_unstable` \
(`RUSTFLAGS=\"--cfg tokio_unstable\" cargo test`, or in `.cargo/config.toml`: \
`[build] rustflags = [\"--cfg\", \"tokio_unstable\"]`); for async stacks, also enable leakcheck's \
`taskdump` feature"
};

/// What an empty async trace says, and no more: tokio's dump re-polls each task and records the
/// tokio resources it reaches, and many waits reach none. Found by experiment (tokio 1.54):
/// `accept()` and other IO awaited through `Registration::async_io` record no leaf, and a child of
/// `FuturesUnordered` (bb8's connection retries in `sleep(delay)`) is not polled unless it was
/// woken; `std::future::pending()` looks the same.
const EMPTY_TRACE: &str = "its async trace is empty: the wait is one tokio's task dump does not \
record, such as IO through `accept()`, a future inside `FuturesUnordered` that was not woken, \
a future of another crate, or `std::future::pending()`";

/// Everything one failed check found.
#[derive(Clone, Debug, Default)]
pub(crate) struct Report {
    /// The test (or check) the survivors are blamed on.
    pub(crate) test: String,
    pub(crate) survivors: Vec<Survivor>,
    pub(crate) task_count: Option<TaskCount>,
    pub(crate) hidden: Vec<Hidden>,
    /// Limits of this run that the reader must know (fallback mode, missing detail).
    pub(crate) notes: Vec<String>,
    pub(crate) settle: Duration,
    /// Why the check stopped waiting before the settle deadline, if it did (the early verdict).
    pub(crate) early: Option<String>,
    pub(crate) full_stacks: bool,
    pub(crate) verbose: bool,
    /// Whether each group names the test that started it (whole-binary check).
    pub(crate) name_tests: bool,
    /// `file`, `line` of the test (its `#[leak_test]`) or of the `verify_none` call.
    pub(crate) location: Option<(String, u32)>,
}

impl Report {
    /// Whether anything leaked.
    pub(crate) fn is_leak(&self) -> bool {
        !self.survivors.is_empty() || self.task_count.as_ref().is_some_and(|t| t.alive > 0)
    }

    fn counts(&self) -> (usize, usize) {
        let threads = self.survivors.iter().filter(|s| s.kind == Kind::Thread).count();
        let tasks = self.survivors.iter().filter(|s| s.kind == Kind::Task).count()
            + self.task_count.as_ref().map_or(0, |t| t.alive);
        (threads, tasks)
    }

    /// `3 threads`, `1 thread and 2 tasks`, `1 child process`.
    pub(crate) fn summary(&self) -> String {
        let (threads, tasks) = self.counts();
        let processes = self.survivors.iter().filter(|s| s.kind == Kind::Process).count();
        let mut parts = Vec::new();
        if threads > 0 {
            parts.push(format!("{threads} {}", Kind::Thread.noun(threads)));
        }
        if tasks > 0 {
            parts.push(format!("{tasks} {}", Kind::Task.noun(tasks)));
        }
        if processes > 0 {
            parts.push(format!("{processes} {}", Kind::Process.noun(processes)));
        }
        parts.join(" and ")
    }

    /// Survivors grouped: same kind, name, stuck frame and origin.
    fn groups(&self) -> Vec<Vec<&Survivor>> {
        let mut groups: BTreeMap<_, Vec<&Survivor>> = BTreeMap::new();
        for survivor in &self.survivors {
            groups.entry(group_key(survivor)).or_default().push(survivor);
        }
        let mut groups: Vec<_> = groups.into_values().collect();
        groups.sort_by_key(|group| std::cmp::Reverse(group.len()));
        groups
    }
}

/// What survivors of one group share: kind, name, stuck frame, origin, test and leaked parent.
type GroupKey = (
    Kind,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<u64>,
);

/// Survivors in one group share kind, name, stuck frame, origin, test and leaked parent.
fn group_key(survivor: &Survivor) -> GroupKey {
    // Internals-only stacks group by their function alone: the line varies with the path taken
    // into the runtime's parking.
    let stuck = survivor.stuck_frame().map(|frame| match frame::tier(frame) {
        frame::Tier::Internal => frame.function.clone(),
        _ => format!(
            "{}@{}",
            frame.function,
            frame::short_location(frame).unwrap_or_default()
        ),
    });
    (
        survivor.kind,
        survivor.name.as_deref().map(names::template),
        stuck,
        survivor.origin(),
        survivor.test.clone(),
        survivor.parent,
    )
}

/// How many ids a group lists before it says "and N more".
pub(crate) const IDS_SHOWN: usize = 8;

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "leakcheck: {} leaked by `{}`", self.summary(), self.test)?;
        for group in self.groups() {
            writeln!(f)?;
            if group[0].kind == Kind::Process {
                children::render_group(f, &group, self.name_tests)?;
                continue;
            }
            render_group(f, &group, self.full_stacks, self.name_tests)?;
        }
        if let Some(count) = &self.task_count {
            if count.alive > 0 {
                writeln!(f)?;
                writeln!(
                    f,
                    "{} {} still alive in the test's runtime (count from tokio's runtime metrics)",
                    count.alive,
                    Kind::Task.noun(count.alive)
                )?;
                writeln!(f, "   {}", MORE_DETAIL)?;
            }
        }
        if self.verbose && !self.hidden.is_empty() {
            writeln!(f)?;
            writeln!(f, "hidden by ignore rules:")?;
            for hidden in &self.hidden {
                writeln!(f, "   {} ({})", describe_one(&hidden.survivor), hidden.rule)?;
            }
        }
        writeln!(f)?;
        match &self.early {
            Some(why) => write!(
                f,
                "note: stopped waiting before the settle deadline ({:?}): {why}",
                self.settle
            )?,
            None => write!(f, "note: waited {:?} for them to finish", self.settle)?,
        }
        writeln!(
            f,
            " (settle deadline: `#[leak_test(settle = \"5s\")]`, `Options::settle`, `LEAKCHECK_SETTLE` \
             or `settle` in `[package.metadata.leakcheck]`)"
        )?;
        for note in &self.notes {
            writeln!(f, "note: {note}")?;
        }
        let named_task = self.survivors.iter().any(|s| {
            s.kind == Kind::Task
                && (s.name.is_some() || s.spawn_site.as_ref().is_some_and(|site| site.named_by.is_some()))
        });
        if named_task {
            writeln!(
                f,
                "note: task names are read from the source at the spawn site (the `.name(..)` of the \
                 task's `Builder`): tokio does not expose them at run time"
            )?;
        }
        Ok(())
    }
}

fn describe_one(survivor: &Survivor) -> String {
    let mut text = format!("{} {}", survivor.kind.noun(1), survivor.id);
    if let Some(name) = &survivor.name {
        let _ = write!(text, " {name:?}");
    }
    if let Some(frame) = survivor.stuck_frame() {
        let _ = write!(text, " stuck in {}", frame.function);
    }
    text
}

fn render_group(
    f: &mut fmt::Formatter<'_>,
    group: &[&Survivor],
    full_stacks: bool,
    name_tests: bool,
) -> fmt::Result {
    let first = group[0];
    let count = group.len();
    let noun = first.kind.noun(count);
    let all_names: Vec<&str> = group.iter().filter_map(|s| s.name.as_deref()).collect();
    let named_by = first
        .spawn_site
        .as_ref()
        .and_then(|site| site.named_by.as_deref());
    let name = match (all_names.is_empty(), named_by) {
        // Not `{:?}`: a folded pattern's braces are shown as they are.
        (false, _) => format!(" \"{}\"", names::fold(&all_names).escape_debug()),
        // A task's name given by an expression: its text, not a value the source does not tell.
        (true, Some(expression)) => format!(" named by `{expression}`"),
        (true, None) => String::new(),
    };
    let ids = if group.iter().any(|s| s.id != 0) {
        format!(" ({})", members::ids(group))
    } else {
        String::new()
    };
    let state = members::state(group);
    writeln!(f, "×{count} {noun}{name}{ids}{state}")?;
    members::render_waits(f, group)?;

    match (&first.stack, first.stuck_frame()) {
        (_, Some(frame)) => writeln!(f, "   stuck in   {}", frame_text(frame))?,
        (Stack::Frames(frames), None) if frames.is_empty() && first.kind == Kind::Task => {
            let spawner = spawner_text(first).unwrap_or_else(|| "an unknown place".into());
            writeln!(f, "   stuck in   the future spawned in {spawner} ({EMPTY_TRACE})")?
        }
        (Stack::Frames(frames), None) => writeln!(
            f,
            "   stuck in   {} (the standard library or system code)",
            frames.first().map(frame_text).unwrap_or_default()
        )?,
        (Stack::Missing(why), None) => match spawner_text(first).filter(|_| first.kind == Kind::Task) {
            Some(spawner) => writeln!(f, "   stuck in   the future spawned in {spawner} ({why})")?,
            None => writeln!(f, "   stuck in   unknown: {why}")?,
        },
    }
    if let Some(wakes_in) = first.wakes_in {
        let secs = wakes_in.as_secs_f64().ceil().max(1.0);
        writeln!(
            f,
            "   bounded:   wakes within ~{secs} s and may end then (the deadline of its timed wait)"
        )?;
    }
    if let Some(root) = first.parent {
        writeln!(
            f,
            "   ends when  task {root} ends: spawned from code running in that task, which leaked too"
        )?;
    }
    if let Some(origin) = first.origin() {
        let verb = if first.kind == Kind::Task {
            "spawned at"
        } else {
            "created at"
        };
        let by = first
            .creator
            .as_ref()
            .map(|c| format!(", by thread {c:?}"))
            .unwrap_or_default();
        writeln!(f, "   {verb} {origin}{by}")?;
    }
    if let Some(test) = first.test.as_ref().filter(|_| name_tests) {
        writeln!(f, "   started by test `{test}`")?;
    }
    members::render_hints(f, group)?;
    if let Stack::Frames(frames) = &first.stack {
        if !frames.is_empty() {
            let label = match (first.kind, full_stacks) {
                (Kind::Thread, false) => "stack (library frames folded; LEAKCHECK_FULL_STACKS=1 shows all):",
                (Kind::Thread, true) => "stack:",
                (Kind::Task, false) => "async trace (library frames folded):",
                (Kind::Task, true) | (Kind::Process, _) => "async trace:",
            };
            writeln!(f, "   {label}")?;
            render_frames(f, frames, first.stuck_frame(), full_stacks)?;
        }
    }
    if let Some(rule) = names::hiding_rule(group) {
        writeln!(
            f,
            "   if intended (e.g. a pool meant to live for the process): #[leak_test({rule})]"
        )?;
    }
    Ok(())
}

/// `real_world::start_background at tests/app.rs:12`: the function that spawned a task, from
/// its spawn backtrace.
fn spawner_text(survivor: &Survivor) -> Option<String> {
    let spawner = survivor
        .created_at
        .iter()
        .find(|frame| frame::tier(frame) != frame::Tier::Internal)?;
    Some(frame_text(spawner))
}

fn frame_text(frame: &Frame) -> String {
    frame::frame_text(frame)
}

/// Writes `frames` one a line, folding runs of library frames unless `full`, marking `stuck`.
pub(crate) fn render_frames(
    f: &mut fmt::Formatter<'_>,
    frames: &[Frame],
    stuck: Option<&Frame>,
    full: bool,
) -> fmt::Result {
    let mut folded = 0;
    let flush = |f: &mut fmt::Formatter<'_>, folded: &mut usize| -> fmt::Result {
        if *folded > 0 {
            writeln!(
                f,
                "         ... {} library frame{}",
                folded,
                if *folded == 1 { "" } else { "s" }
            )?;
            *folded = 0;
        }
        Ok(())
    };
    let mut previous: Option<frame::Crate> = None;
    for frame in frames {
        // Of each run of one dependency's frames, the innermost (its boundary with the internals
        // it waits in) is shown.
        let shown = match frame::tier(frame) {
            frame::Tier::User => true,
            frame::Tier::Dependency => {
                let krate = frame::dependency_crate(frame);
                let boundary = krate != previous;
                previous = krate;
                boundary
            }
            frame::Tier::Internal => {
                previous = None;
                false
            }
        };
        if frame::tier(frame) == frame::Tier::User {
            previous = None;
        }
        if !shown && !full {
            folded += 1;
            continue;
        }
        flush(f, &mut folded)?;
        let marker = if stuck.is_some_and(|s| std::ptr::eq(s, frame)) {
            "→"
        } else {
            " "
        };
        writeln!(f, "       {marker} {}", frame_text(frame))?;
    }
    flush(f, &mut folded)
}
