//! What tokio tells about the tasks of a runtime.
//!
//! - stable: `Handle::metrics().num_alive_tasks()`, a count per runtime;
//! - `--cfg tokio_unstable`: runtimes leakcheck builds register `on_task_spawn` /
//!   `on_task_terminate` hooks (a [`Probe`] per runtime), so each live task has an id and a spawn
//!   site;
//! - that plus the `taskdump` feature: [`trace_leaves`] turns a task dump's async trace into frames.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use crate::model::{Flavor, Runtime};

/// Live tasks of one runtime that leakcheck built, from its spawn hooks.
#[derive(Default)]
pub(crate) struct Probe {
    #[cfg(tokio_unstable)]
    pub(crate) live: Mutex<std::collections::HashMap<u64, Spawned>>,
    /// Each task's parent: the task that was running when it was spawned (kept after either
    /// ends, so that a survivor's leaked ancestor is found through tasks that ended).
    #[cfg(tokio_unstable)]
    pub(crate) parents: Mutex<std::collections::HashMap<u64, u64>>,
}

/// How a live task was spawned: tokio's spawn location and the raw spawn backtrace (resolved
/// only for a report).
#[cfg(tokio_unstable)]
pub(crate) struct Spawned {
    pub(crate) location: &'static std::panic::Location<'static>,
    pub(crate) backtrace: Box<[usize]>,
}

#[cfg(tokio_unstable)]
impl Probe {
    /// Ids of the tasks alive now (a snapshot).
    pub(crate) fn live_ids(&self) -> impl Iterator<Item = u64> {
        let ids: Vec<u64> = self
            .live
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .keys()
            .copied()
            .collect();
        ids.into_iter()
    }
}

/// The spawning caller's raw return addresses, innermost first (resolved only for a report).
#[cfg(tokio_unstable)]
fn spawn_backtrace() -> Box<[usize]> {
    let mut frames = [0usize; crate::probe::lineage::CREATION_FRAMES];
    let len = crate::probe::unwind::trace(&mut frames);
    frames[..len].into()
}

#[cfg(tokio_unstable)]
pub(crate) fn task_id(id: tokio::task::Id) -> u64 {
    id.to_string().parse().unwrap_or(0)
}

/// Builds the runtime of an async `#[leak_test]`. The ids of its threads are added to
/// `runtime_threads` as they start (they are the test's own until it shuts the runtime down).
pub(crate) fn build_runtime(
    config: Runtime,
    runtime_threads: Arc<Mutex<HashSet<u64>>>,
) -> std::io::Result<(tokio::runtime::Runtime, Arc<Probe>)> {
    let mut builder = match config.flavor {
        Flavor::CurrentThread => tokio::runtime::Builder::new_current_thread(),
        Flavor::MultiThread => tokio::runtime::Builder::new_multi_thread(),
    };
    if let Some(workers) = config.worker_threads {
        builder.worker_threads(workers);
    }
    builder.enable_all().start_paused(config.start_paused);
    builder.on_thread_start(move || {
        let uid = crate::probe::lineage::current().uid;
        runtime_threads
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(uid);
    });
    let probe = Arc::new(Probe::default());
    #[cfg(tokio_unstable)]
    {
        let spawned = probe.clone();
        builder.on_task_spawn(move |meta| {
            // The hook runs where `spawn` is called: the current task is the new task's parent.
            if let Some(parent) = tokio::task::try_id() {
                spawned
                    .parents
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(task_id(meta.id()), task_id(parent));
            }
            spawned.live.lock().unwrap_or_else(|e| e.into_inner()).insert(
                task_id(meta.id()),
                Spawned {
                    location: meta.spawned_at(),
                    backtrace: spawn_backtrace(),
                },
            );
        });
        let terminated = probe.clone();
        builder.on_task_terminate(move |meta| {
            terminated
                .live
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&task_id(meta.id()));
        });
    }
    let runtime = builder.build()?;
    #[cfg(tokio_unstable)]
    probes().insert(runtime.handle().id(), probe.clone());
    Ok((runtime, probe))
}

/// Forgets a runtime's probe once the runtime is gone.
pub(crate) fn forget_runtime(runtime: &tokio::runtime::Runtime) {
    #[cfg(tokio_unstable)]
    probes().remove(&runtime.handle().id());
    let _ = runtime;
}

#[cfg(tokio_unstable)]
fn probes() -> std::sync::MutexGuard<'static, std::collections::HashMap<tokio::runtime::Id, Arc<Probe>>> {
    static PROBES: std::sync::LazyLock<Mutex<std::collections::HashMap<tokio::runtime::Id, Arc<Probe>>>> =
        std::sync::LazyLock::new(Default::default);
    PROBES.lock().unwrap_or_else(|e| e.into_inner())
}

/// The probe of the runtime the caller runs on, if leakcheck built it.
pub(crate) fn current_probe() -> Option<Arc<Probe>> {
    #[cfg(tokio_unstable)]
    {
        let handle = tokio::runtime::Handle::try_current().ok()?;
        return probes().get(&handle.id()).cloned();
    }
    #[allow(unreachable_code)]
    None
}

/// Ids of the current runtime's live tasks, where known.
pub(crate) fn current_task_ids() -> Vec<u64> {
    #[cfg(tokio_unstable)]
    if let Some(probe) = current_probe() {
        return probe.live_ids().collect();
    }
    Vec::new()
}

/// The current runtime's live task count, if called inside a runtime.
pub(crate) fn current_task_count() -> Option<usize> {
    let handle = tokio::runtime::Handle::try_current().ok()?;
    Some(handle.metrics().num_alive_tasks())
}

/// A task's async trace as frames, one list per leaf (each innermost first).
#[cfg(all(tokio_unstable, feature = "taskdump"))]
pub(crate) fn trace_leaves(trace: &tokio::runtime::dump::Trace) -> Vec<Vec<crate::model::Frame>> {
    let mut leaves = Vec::new();
    for backtrace in trace.resolve_backtraces() {
        let mut frames = Vec::new();
        for frame in backtrace.frames() {
            for symbol in frame.symbols() {
                let function = symbol.name_demangled().unwrap_or("<unknown>").to_string();
                let file = symbol.filename().map(|path| path.display().to_string());
                frames.push(crate::model::Frame::new(function, file, symbol.lineno()));
            }
        }
        leaves.push(frames);
    }
    leaves
}
