//! Hints for the idioms real code uses, recognised from stacks, creation frames and the kernel's
//! view of the wait: a tokio runtime never shut down, a Book-style worker pool whose channel was
//! never closed, a scheduled pool's timed wait, a sleep loop, a wait on several resources.

use std::collections::HashMap;

use crate::model::frame;
use crate::model::{Frame, Hint, Kind, Stack, Survivor, WaitKind};

/// Frames of tokio's schedulers and blocking pool waiting for work.
const RUNTIME_PARK: &[&str] = &[
    "tokio::runtime::scheduler::multi_thread::worker",
    "tokio::runtime::scheduler::current_thread",
    "tokio::runtime::blocking::pool::Inner::run",
];

/// Workers of a tokio runtime parked in its scheduler, with no user code on the stack: the
/// runtime itself was never dropped or shut down.
pub(super) fn forgotten_runtime(frames: &[Frame]) -> Option<Hint> {
    if frame::first_user_frame(frames).is_some() {
        return None;
    }
    let parked = frames
        .iter()
        .find(|frame| RUNTIME_PARK.iter().any(|park| frame.key.starts_with(park)))?;
    Some(Hint {
        cause: "a tokio runtime that was never dropped or shut down: its worker threads park in the \
                scheduler waiting for tasks (a `Runtime` kept in a static, leaked with \
                `mem::forget`/`Box::leak`, or stored in a struct that outlives the test)"
            .into(),
        fix: "drop the `Runtime` (or call `shutdown_timeout`/`shutdown_background`) when its owner \
              is done, e.g. in the owner's `Drop`"
            .into(),
        evidence: format!("`{}` in the stack, and no user frame", parked.function),
    })
}

/// Crates whose pools have a switch that makes a dropped pool end its workers at once, and the
/// switch as the fix names it.
const DISCARD_SWITCHES: &[(&str, &str)] = &[(
    "scheduled-thread-pool",
    "build the scheduler with `ScheduledThreadPool::builder().on_drop_behavior(\
     OnPoolDropBehavior::DiscardPendingScheduled)` (r2d2: pass it to `Builder::thread_pool`)",
)];

/// Workers of a dependency's pool, idle in that pool's own wait: the same crate created them
/// (its pool constructor) and holds them, with no user frame on their stacks. Untimed, nothing
/// will ever give them work: the pool's handle was never dropped. Timed, they wake for the pool's
/// next scheduled job: either the pool was never dropped, or it was and still completes its
/// pending scheduled work (a reaper every 30 s), which keeps them alive until then.
pub(super) fn pool_workers(survivor: &Survivor, frames: &[Frame]) -> Option<Hint> {
    if survivor.kind != Kind::Thread || frame::first_user_frame(frames).is_some() {
        return None;
    }
    let stuck = frame::stuck_frame(frames).filter(|frame| frame::tier(frame) == frame::Tier::Dependency)?;
    let krate = frame::dependency_crate(stuck)?;
    let spawn = survivor
        .created_at
        .iter()
        .find(|frame| frame::tier(frame) != frame::Tier::Internal)?;
    if frame::dependency_crate(spawn).as_ref() != Some(&krate) {
        return None;
    }
    // The call the user made: the outermost library frame before the first user frame.
    let user = survivor.created_at.iter().position(|frame| !frame.library)?;
    let constructor = survivor.created_at[..user]
        .iter()
        .rev()
        .find(|frame| frame::tier(frame) == frame::Tier::Dependency)
        .map_or(spawn, |frame| frame);
    let built = format!(
        "the pool built by `{}`{}",
        frame::base_name(&constructor.key),
        frame::short_location(&survivor.created_at[user])
            .map(|at| format!(" at {at}"))
            .unwrap_or_default()
    );
    let evidence = format!(
        "created in `{}` and waiting in `{}`, both {krate}, with no user frame",
        spawn.function, stuck.function
    );
    let timed = survivor
        .kernel
        .as_ref()
        .and_then(|kernel| kernel.wait.as_ref())
        .is_some_and(|wait| wait.kind == WaitKind::Timed);
    if !timed {
        return Some(Hint {
            cause: format!(
                "an idle pool whose handle was never dropped: its workers wait for work that will \
                 never come ({built}, then forgotten, leaked or kept in something that outlives \
                 the test)"
            ),
            fix: "drop the pool when the test is done with it, or own it where it is dropped (a \
                  local, or a field of a struct the test drops); never `mem::forget` it"
                .into(),
            evidence,
        });
    }
    let switch = DISCARD_SWITCHES
        .iter()
        .find(|(name, _)| *name == krate.name)
        .map(|(_, switch)| format!("; if it is dropped already, {switch}"))
        .unwrap_or_default();
    Some(Hint {
        cause: format!(
            "a pool that still runs scheduled work: its workers wait for its next scheduled job \
             ({built}); either the pool was never dropped, or it was dropped and completes its \
             pending scheduled jobs first (a reaper every 30 s), and its workers live until then"
        ),
        fix: format!(
            "drop the pool when the test is done with it{switch}; or make its scheduled work shorter than the settle deadline"
        ),
        evidence,
    })
}

/// A task a dependency spawned (its spawn site is the library's), from a call the test made:
/// the library's background work, which ends when the library stops it.
pub(super) fn library_task(survivor: &Survivor) -> Option<Hint> {
    let spawn = survivor
        .created_at
        .iter()
        .find(|frame| frame::tier(frame) != frame::Tier::Internal)?;
    let krate = frame::dependency_crate(spawn).filter(|_| frame::tier(spawn) == frame::Tier::Dependency)?;
    let user = survivor.created_at.iter().position(|frame| !frame.library)?;
    let call = survivor.created_at[..user]
        .iter()
        .rev()
        .find(|frame| frame::tier(frame) == frame::Tier::Dependency)
        .map_or(spawn, |frame| frame);
    Some(Hint {
        cause: format!(
            "background work of {krate}, spawned when the test called `{}`{}: it ends when the \
             library stops it (when what it serves is dropped, shut down, or its retry or timer \
             runs out)",
            frame::base_name(&call.key),
            frame::short_location(&survivor.created_at[user])
                .map(|at| format!(" at {at}"))
                .unwrap_or_default()
        ),
        fix: "drop or shut down what the test built with it before the test ends, and shorten the \
              library's intervals and timeouts in tests (its builder's settings) so that its tasks \
              end within the settle deadline"
            .into(),
        evidence: format!("spawned in `{}` ({krate}), with no user frame", spawn.function),
    })
}

/// Hints from the kernel's view: a timed wait wakes by itself (a periodic job keeps it alive),
/// a sleep loop has no stop signal, a wait on several resources waits on all of them.
pub(super) fn from_wait(survivor: &Survivor, frames: &[Frame]) -> Option<Hint> {
    let wait = survivor.kernel.as_ref()?.wait.as_ref()?;
    let at = survivor
        .stuck_frame()
        .map(|frame| format!(" in `{}`", frame.function))
        .unwrap_or_default();
    let call = wait.call.as_deref().unwrap_or("the kernel");
    match wait.kind {
        WaitKind::Timed if call.ends_with("nanosleep") => Some(Hint {
            cause: "one long sleep: it wakes by itself when the sleep ends".into(),
            fix: "sleep less, or wait on a stop signal with a timeout (`recv_timeout`, a condvar's \
                  `wait_timeout`) so that its owner can end it when the test is done"
                .into(),
            evidence: format!("`{call}`, not woken during the settle window{at}"),
        }),
        WaitKind::Timed => Some(Hint {
            cause: "a timed wait: it wakes by itself; a periodic job (a pool's reaper, a scheduler's \
                    next run, a poll interval) keeps it alive"
                .into(),
            fix: "stop the pool/scheduler that owns it (drop it or call its shutdown) when its owner \
                  is done, instead of keeping it in a static or leaking it"
                .into(),
            evidence: format!("`{call}` with a timeout{at}"),
        }),
        WaitKind::Io if wait.resources.len() > 1 => Some(Hint {
            cause: format!(
                "waits on several resources at once (a `select!` or poll loop) and none of them \
                 becomes ready: {}",
                wait.resources.join(", ")
            ),
            fix: "make one of them end the loop (close the listener or the peer, send the shutdown \
                  signal), or add a cancellation branch, and trigger it when the owner is done"
                .into(),
            evidence: format!("`{call}` over {} file descriptors{at}", wait.resources.len()),
        }),
        WaitKind::SleepLoop
            if super::for_frames(frames).is_none_or(|hint| hint.cause.starts_with("sleeping")) =>
        {
            Some(Hint {
                cause:
                    "sleeping in a loop with no stop signal (a poller or ticker that nothing tells to stop)"
                        .into(),
                fix: "check a stop flag or cancellation token on every iteration, and stop it when its \
                      owner is done"
                    .into(),
                evidence: format!("`{call}`, woken {} times{at}", wait.wakeups.unwrap_or(0)),
            })
        }
        _ => None,
    }
}

/// Workers sharing one receiver behind a mutex (the Rust Book's pool: `Arc<Mutex<Receiver>>`):
/// one waits in `recv` holding the lock, the others wait for the lock. They are one diagnosis:
/// the channel's senders were never dropped. A single worker shows no `Mutex::lock` frame (it
/// holds the lock, no one waits for it); its `recv` is recognised from the source at the calling
/// line: called on a `.lock()` guard.
pub(crate) fn for_group(survivors: &mut [Survivor]) {
    let mut by_site: HashMap<String, Vec<usize>> = HashMap::new();
    for (index, survivor) in survivors.iter().enumerate() {
        if survivor.kind != Kind::Thread {
            continue;
        }
        if let Some(user) = survivor.stuck_frame().filter(|frame| !frame.library) {
            let site = format!("{}@{:?}", user.function, frame::short_location(user));
            by_site.entry(site).or_default().push(index);
        }
    }
    for indices in by_site.values() {
        let has = |symptom: &str| {
            indices.iter().any(|&i| match &survivors[i].stack {
                Stack::Frames(frames) => frames.iter().any(|frame| frame.key.contains(symptom)),
                Stack::Missing(_) => false,
            })
        };
        let receiving = has(RECV);
        let locking = has("Mutex::lock") || has("futex::Mutex::lock_contended");
        let user = survivors[indices[0]]
            .stuck_frame()
            .map(|frame| frame.function.clone())
            .unwrap_or_default();
        let (holding, evidence) = if receiving && locking {
            (
                "one worker waits in `recv` holding the lock, the others wait for the lock",
                format!("workers in `recv` and in `Mutex::lock` at the same line of `{user}`"),
            )
        } else if let Some((guard, at)) = indices.iter().find_map(|&i| recv_under_lock(&survivors[i])) {
            let holding = if indices.len() == 1 {
                "its worker waits in `recv` holding the lock (other workers would wait for the lock)"
            } else {
                "its workers wait in `recv` holding the lock (other workers would wait for the lock)"
            };
            let evidence = format!(
                "`recv` called on the guard of `{guard}` at {at} (read from the source), in `{user}`"
            );
            (holding, evidence)
        } else {
            continue;
        };
        let hint = Hint {
            cause: format!(
                "a worker pool sharing one receiver behind a mutex (`Arc<Mutex<Receiver>>`, as in \
                 the Rust Book): {holding}; the channel's sender was never dropped, so no worker \
                 ever sees the channel close"
            ),
            fix: "drop the pool's sender when the pool is done (the Book's `Drop for ThreadPool` \
                  does `drop(self.sender.take())`, then joins the workers); never leak the pool"
                .into(),
            evidence,
        };
        for &index in indices {
            survivors[index].hint = Some(hint.clone());
        }
    }
}

/// A channel receive in std's `mpsc`/`mpmc` (`recv_timeout` is a timed wait, not this).
const RECV: &str = "Receiver::recv";

/// The guard a survivor's `recv` is called on, and where: the user frame that calls `recv`,
/// read from the source (`receiver.lock().unwrap().recv()`, or `recv` on a variable bound to a
/// `.lock()` guard).
fn recv_under_lock(survivor: &Survivor) -> Option<(String, String)> {
    let Stack::Frames(frames) = &survivor.stack else {
        return None;
    };
    let recv = frames
        .iter()
        .position(|frame| frame.key.contains(RECV) && !frame.key.contains("recv_timeout"))?;
    let caller = frames[recv + 1..].iter().find(|frame| !frame.library)?;
    let guard = crate::probe::source::recv_guard(caller.file.as_deref()?, caller.line?)?;
    Some((guard, frame::short_location(caller)?))
}

/// A task whose async trace has several leaves (a `select!` or `join!`) waits on each of them:
/// the hint names them all, rather than diagnosing one at random.
#[cfg_attr(not(all(tokio_unstable, feature = "taskdump")), allow(dead_code))]
pub(crate) fn for_leaves(leaves: &[Vec<Frame>]) -> Option<Hint> {
    let mut waits: Vec<String> = select_in_source(leaves)
        .into_iter()
        .map(|branch| format!("`{branch}`"))
        .collect();
    let from_source = waits.len() >= 2;
    for leaf in leaves.iter().filter(|_| !from_source) {
        if let Some(api) = awaited_api(leaf) {
            if !waits.contains(&api) {
                waits.push(api);
            }
        }
    }
    if waits.len() < 2 {
        return None;
    }
    let user = leaves
        .iter()
        .find_map(|leaf| frame::first_user_frame(leaf))
        .map(|frame| format!(" in `{}`", frame.function))
        .unwrap_or_default();
    Some(Hint {
        cause: format!(
            "waits on several resources at once (a `select!`) and none of them becomes ready: {}",
            waits.join(", ")
        ),
        fix: "make one of them end the wait (close the listener or the peer, send the shutdown \
              signal), or add a cancellation branch, and trigger it when the owner is done"
            .into(),
        evidence: format!(
            "{} {} in the task's async trace{user}",
            leaves.len(),
            if leaves.len() == 1 { "leaf" } else { "leaves" }
        ),
    })
}

/// The branches of the `select!` a trace passes through, read from the user's source: tokio's
/// dumps leave some branches (IO such as `accept()`) without a leaf of their own.
#[cfg_attr(not(all(tokio_unstable, feature = "taskdump")), allow(dead_code))]
fn select_in_source(leaves: &[Vec<Frame>]) -> Vec<String> {
    for leaf in leaves {
        let Some(at) = leaf.iter().position(|frame| {
            frame
                .file
                .as_deref()
                .is_some_and(|file| file.ends_with("macros/select.rs"))
        }) else {
            continue;
        };
        let Some(user) = leaf[at + 1..].iter().find(|frame| !frame.library) else {
            continue;
        };
        if let (Some(file), Some(line)) = (user.file.as_deref(), user.line) {
            let branches = crate::probe::source::select_branches(file, line);
            if branches.len() >= 2 {
                return branches;
            }
        }
    }
    Vec::new()
}

/// What one leaf of an async trace awaits: the API the user's frame called (`TcpListener::accept`,
/// `tokio::signal::ctrl_c`), skipping combinators such as `poll_fn`.
#[cfg_attr(not(all(tokio_unstable, feature = "taskdump")), allow(dead_code))]
fn awaited_api(leaf: &[Frame]) -> Option<String> {
    let user = leaf.iter().position(|frame| !frame.library).unwrap_or(leaf.len());
    let combinator = |function: &str| {
        function.starts_with('<')
            || function.contains("poll_fn")
            || function.contains("PollFn")
            || function.contains("::macros::")
    };
    let api = leaf[..user].iter().rev().find(|frame| !combinator(&frame.key))?;
    Some(format!("`{}`", frame::base_name(&api.key)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(function: &str, library: bool) -> Frame {
        Frame {
            library,
            ..Frame::new(function.into(), None, None)
        }
    }

    /// Two leaves of a `select!` are both named; one leaf is no `select!`.
    #[test]
    fn select_names_every_leaf() {
        let accept = vec![
            frame("tokio::runtime::io::registration::Registration::poll_ready", true),
            frame(
                "tokio::net::tcp::listener::TcpListener::accept::{{closure}}",
                true,
            ),
            frame("tokio::future::poll_fn::PollFn<F>::poll", true),
            frame("app::serve::{{closure}}", false),
        ];
        let ctrl_c = vec![
            frame("tokio::sync::watch::Receiver<T>::changed::{{closure}}", true),
            frame("tokio::signal::ctrl_c::{{closure}}", true),
            frame("tokio::future::poll_fn::PollFn<F>::poll", true),
            frame("app::serve::{{closure}}", false),
        ];
        let hint = for_leaves(&[accept.clone(), ctrl_c]).unwrap();
        assert!(
            hint.cause
                .contains("`tokio::net::tcp::listener::TcpListener::accept`"),
            "{hint:?}"
        );
        assert!(hint.cause.contains("`tokio::signal::ctrl_c`"), "{hint:?}");
        assert!(hint.evidence.contains("app::serve"), "{hint:?}");
        assert_eq!(for_leaves(&[accept]), None);
    }
}
