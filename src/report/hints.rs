//! Cause-and-fix hints: the detection checklist, read from a survivor's stack.
//!
//! Each hint names the evidence it rests on (the frame that matched). Where no rule matches,
//! there is no hint: saying nothing beats a guess.

mod idioms;

#[cfg_attr(not(all(tokio_unstable, feature = "taskdump")), allow(unused_imports))]
pub(crate) use idioms::{for_group, for_leaves};

use crate::model::frame;
use crate::model::{Frame, Hint, Kind, Stack, Survivor};

/// One checklist entry: frames that show the symptom, the cause, the fix.
struct Rule {
    /// Substrings of a frame's function name as [`frame::match_key`] writes it (no generic
    /// arguments), any of which is the symptom.
    frames: &'static [&'static str],
    /// Substrings that must NOT be in the matching function name (to tell send from recv...).
    unless: &'static [&'static str],
    cause: &'static str,
    fix: &'static str,
}

/// Ordered: the first rule whose symptom appears in the stack (innermost frame first) wins.
const RULES: &[Rule] = &[
    Rule {
        frames: &[
            "mpsc::SyncSender::send",
            "mpmc::Sender::send",
            "mpmc::array::Channel::send",
            "mpmc::zero::Channel::send",
            "mpsc::bounded::Sender::send",
            "mpsc::bounded::Sender::reserve",
            "crossbeam_channel::channel::Sender::send",
            "broadcast::Sender::send",
        ],
        unless: &[],
        cause: "blocked sending on a channel that nobody receives from (a rendezvous or full bounded channel whose receiver is alive but never reads)",
        fix: "make sure a receiver keeps reading until the senders are done, or drop the receiver so `send` returns an error; or give the channel a buffer large enough for every message",
    },
    Rule {
        frames: &[
            "mpsc::Receiver::recv",
            "mpmc::Receiver::recv",
            "mpmc::list::Channel::recv",
            "mpmc::array::Channel::recv",
            "mpmc::zero::Channel::recv",
            "mpsc::bounded::Receiver::recv",
            "mpsc::unbounded::UnboundedReceiver::recv",
            "mpsc::chan::Rx::recv",
            "broadcast::Receiver::recv",
            "watch::Receiver::changed",
            "oneshot::Receiver",
            "crossbeam_channel::channel::Receiver::recv",
            "mpsc::Receiver::iter",
            "IntoIter as core::iter::traits::iterator::Iterator>::next",
        ],
        unless: &["recv_timeout"],
        cause: "blocked receiving from a channel whose senders are never dropped (a sender kept in a registry, a struct or a clone that outlives the work)",
        fix: "close the channel by dropping every sender when the work is done, or add a shutdown signal (a `select!` branch on a cancellation token or a stop channel)",
    },
    Rule {
        frames: &["Condvar::wait", "Condvar::wait_while", "Notify::notified", "Barrier::wait", "Semaphore::acquire"],
        unless: &["wait_timeout"],
        cause: "waiting on a condition variable (or `Notify`/semaphore) whose notifier never came",
        fix: "make sure every path that should wake it notifies (including error and shutdown paths), or wait with a timeout and re-check a stop flag",
    },
    Rule {
        frames: &["Mutex::lock", "RwLock::read", "RwLock::write", "futex::Mutex::lock_contended", "Mutex::lock_owned"],
        unless: &[],
        cause: "waiting for a lock that is never released (a guard held by a stuck or leaked owner, or a lock-order deadlock)",
        fix: "release the guard before blocking or awaiting, keep lock order consistent, or use `try_lock`/a timeout",
    },
    Rule {
        frames: &["JoinHandle::join", "thread::scoped::ScopedJoinHandle::join"],
        unless: &[],
        cause: "waiting to join a thread that never ends",
        fix: "give the joined thread a way to stop (close its channel, set its stop flag) before joining it",
    },
    Rule {
        frames: &[
            "std::thread::sleep",
            "std::thread::functions::sleep",
            "std::sys::thread::windows::sleep",
            "tokio::time::sleep",
            "tokio::time::interval::Interval::tick",
            "Sleep as core::future::future::Future",
        ],
        unless: &[],
        cause: "sleeping in a loop with no stop signal (a poller or ticker that nothing tells to stop)",
        fix: "check a stop flag or cancellation token on every iteration (e.g. `select!` on the token and the tick), and stop it when its owner is done",
    },
    Rule {
        frames: &[
            "TcpStream",
            "TcpListener::accept",
            "UdpSocket::recv",
            "UnixStream",
            "std::io::stdio::Stdin",
            "io::Read>::read",
            "std::process::Child::wait",
            "PollEvented",
        ],
        unless: &[],
        cause: "waiting on I/O or an external call that never completes (a peer that never answers, a request with no timeout)",
        fix: "put a timeout on the call and give the caller a cancellation path (shut the socket down, or `select!` on a cancellation token)",
    },
    Rule {
        frames: &["core::future::pending::Pending", "futures_util::future::pending::Pending"],
        unless: &[],
        cause: "awaiting a future that can never complete (`pending()`, or a `select!` with no branch that can finish)",
        fix: "add a cancellation branch (a token, a shutdown channel) so the task has a way to end",
    },
];

/// The hint for a survivor, if its stack or its wait shows a known symptom. Idioms come first
/// (a runtime's parked workers), then what the kernel says about the wait (a timed wait is no
/// missing notification), then the checklist.
pub(crate) fn for_survivor(survivor: &Survivor) -> Option<Hint> {
    let frames = match &survivor.stack {
        Stack::Frames(frames) => Some(frames),
        Stack::Missing(_) => None,
    };
    // A dependency's own task, waiting in the dependency (or with no async trace at all): its
    // background work, known from its spawn site alone.
    if survivor.kind == Kind::Task && frames.is_none_or(|frames| frame::first_user_frame(frames).is_none()) {
        if let Some(hint) = idioms::library_task(survivor) {
            return Some(hint);
        }
    }
    let frames = frames?;
    // An empty async trace proves nothing: tokio's dump re-polls the task and records the
    // leaves it reaches, and some waits have none (see `EMPTY_TRACE` in `report`).
    if survivor.kind == Kind::Task && frames.is_empty() {
        return None;
    }
    idioms::forgotten_runtime(frames)
        .or_else(|| idioms::pool_workers(survivor, frames))
        .or_else(|| idioms::from_wait(survivor, frames))
        .or_else(|| for_frames(frames))
}

/// The first checklist entry whose symptom appears in `frames`.
pub(crate) fn for_frames(frames: &[Frame]) -> Option<Hint> {
    for frame in frames {
        for rule in RULES {
            let matched = rule.frames.iter().any(|symptom| frame.key.contains(symptom));
            let excluded = rule.unless.iter().any(|other| frame.key.contains(other));
            if matched && !excluded {
                let at = frame::first_user_frame(frames)
                    .map(|user| format!(", called from `{}`", user.function))
                    .unwrap_or_default();
                return Some(Hint {
                    cause: rule.cause.to_string(),
                    fix: rule.fix.to_string(),
                    evidence: format!("`{}` in the stack{at}", frame.function),
                });
            }
        }
    }
    None
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

    /// Every symptom is written as a match key (no generic arguments), or it could never match.
    #[test]
    fn symptoms_are_match_keys() {
        for symptom in RULES
            .iter()
            .flat_map(|rule| rule.frames.iter().chain(rule.unless))
        {
            assert_eq!(frame::match_key(symptom), *symptom);
        }
    }

    /// The same stack demangled from v0 symbols (`cargo llvm-cov`, `-C
    /// symbol-mangling-version=v0`) gets the same hint.
    #[test]
    fn v0_names_get_the_same_hints() {
        let send = [
            frame("<std::sync::mpmc::zero::Channel<u32>>::send::{closure#0}", true),
            frame("<std::sync::mpsc::SyncSender<u32>>::send", true),
            frame("my_tests::reply_worker", false),
        ];
        let hint = for_frames(&send).expect("a hint");
        assert!(hint.cause.starts_with("blocked sending"), "{hint:?}");
        let recv = [
            frame("<std::sync::mpmc::Receiver<alloc::string::String>>::recv", true),
            frame("my_tests::listen", false),
        ];
        let hint = for_frames(&recv).expect("a hint");
        assert!(hint.cause.starts_with("blocked receiving"), "{hint:?}");
        let timed = [frame("<std::sync::mpsc::Receiver<u8>>::recv_timeout", true)];
        assert_eq!(for_frames(&timed), None);
    }

    /// A send blocked in std's channel gets the blocked-send hint, naming its evidence.
    #[test]
    fn blocked_send() {
        let frames = [
            frame("std::sync::mpmc::zero::Channel<T>::send", true),
            frame("std::sync::mpsc::SyncSender<T>::send", true),
            frame("my_tests::reply_worker", false),
        ];
        let hint = for_frames(&frames).unwrap();
        assert!(hint.cause.starts_with("blocked sending"), "{hint:?}");
        assert!(hint.evidence.contains("my_tests::reply_worker"), "{hint:?}");
    }

    /// A stack with no known symptom gets no hint rather than a guess.
    #[test]
    fn no_guess() {
        let frames = [
            frame("my_tests::compute", false),
            frame("core::ops::function::FnOnce::call_once", true),
        ];
        assert_eq!(for_frames(&frames), None);
    }

    /// `recv_timeout` is a bounded wait, not the blocked-receive symptom.
    #[test]
    fn timeouts_are_not_blocked_receives() {
        let frames = [frame("std::sync::mpmc::Receiver<T>::recv_timeout", true)];
        assert_eq!(for_frames(&frames), None);
    }
}
