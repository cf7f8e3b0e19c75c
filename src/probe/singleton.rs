//! Process-wide singletons: threads created while a one-time initializer runs.
//!
//! A pool started lazily in a `static` (`std::sync::Once`, `OnceLock`, `LazyLock`, `lazy_static`,
//! `once_cell`, and what is built on them: rayon's global registry, a `static` tokio runtime) is
//! meant to live as long as the process. Its threads are created by whichever test touched it
//! first, so lineage alone would blame that test. This probe tells them apart from the creation
//! backtrace that [`lineage`](super::lineage) records anyway, without symbols or debug info.
//!
//! # How
//!
//! Every std one-time initializer, whatever its generic front (`Once::call_once`,
//! `call_once_force`, `OnceLock::get_or_init`, `LazyLock::force`), runs its closure through one
//! non-generic function of std's `Once` implementation. Its start address is learned at first
//! need, by a probe: run a few initializers of each kind whose closure records a backtrace, record
//! one outside them too, and keep the functions of the frames the inner trace has between the
//! common innermost frames (the tracer) and the common outermost ones (the probe's callers): the
//! closure and the `Once` machinery. Frame addresses are mapped to the start of their enclosing
//! function by the unwinder's own tables (`_Unwind_FindEnclosingFunction`, the `.eh_frame` index
//! that unwinding uses): no symbol is resolved, no debug info is loaded.
//!
//! A thread is a singleton if a frame of its creation backtrace lies in one of those functions.
//! The decision is made once per thread, only for threads a check finds alive (a clean pass never
//! pays it), and cached on its [`Node`]: about 50 table lookups.
//!
//! `once_cell::sync` has its own non-generic `once_cell::imp::initialize_or_wait`: the probe runs
//! a `once_cell` initializer too (leakcheck depends on once_cell 1.x, which cargo unifies with the
//! user's). A copy the probe cannot reach (another major version) is recognised by name when a
//! report resolves a creation backtrace anyway ([`learn`]); from then on its address is known
//! too, and later threads are decided cheaply.
//!
//! Limits: the creation backtrace keeps its innermost 48 frames, so an initializer more than ~40
//! calls above `pthread_create` is not seen; a build without unwind tables (`panic = "abort"` with
//! `-C force-unwind-tables=no`) has no enclosing functions to look up, and nothing is a singleton.

use std::collections::HashSet;
use std::ffi::c_void;
use std::sync::atomic::Ordering;
use std::sync::{LazyLock, Mutex, Once, OnceLock};

use super::lineage::Node;

extern "C" {
    /// From the unwinder (libgcc_s), which std links on Linux.
    fn _Unwind_FindEnclosingFunction(pc: *mut c_void) -> *mut c_void;
}

const UNDECIDED: u8 = 0;
const NO: u8 = 1;
const YES: u8 = 2;

/// Start addresses of the one-time-initializer functions, learned by the probe (and by [`learn`]).
/// A plain mutex, not a `OnceLock`: the probe must not itself run inside a one-time initializer.
static KNOWN: Mutex<Option<HashSet<usize>>> = Mutex::new(None);

/// The start of the function that contains `ip` (a return address: `ip - 1` is the call).
fn enclosing(ip: usize) -> usize {
    if ip == 0 {
        return 0;
    }
    // SAFETY: a lookup in the unwinder's tables; any address is valid input (0 if unknown).
    unsafe { _Unwind_FindEnclosingFunction((ip - 1) as *mut c_void) as usize }
}

/// Enclosing functions of the calling stack, innermost first.
#[inline(never)]
fn trace() -> Vec<usize> {
    let mut functions = Vec::new();
    // SAFETY: as for `lineage::register_child`'s backtrace, the unwinder is thread-safe on Linux.
    unsafe {
        backtrace::trace_unsynchronized(|frame| {
            functions.push(enclosing(frame.ip() as usize));
            // Whole stacks: a cut one would shift the callers' frames into the middle.
            true
        });
    }
    functions
}

/// The functions `inner` has between the frames it shares with `outer` at both ends.
fn middle(inner: &[usize], outer: &[usize]) -> Vec<usize> {
    let prefix = inner.iter().zip(outer).take_while(|(a, b)| a == b).count();
    let suffix = inner
        .iter()
        .rev()
        .zip(outer.iter().rev())
        .take_while(|(a, b)| a == b)
        .count();
    let end = inner.len().saturating_sub(suffix).max(prefix);
    inner[prefix..end].to_vec()
}

/// Runs one initializer of each std kind and returns the functions between its closure and
/// the caller.
#[inline(never)]
fn probe() -> HashSet<usize> {
    let mut found = HashSet::new();
    let mut keep = |inner: Vec<usize>| {
        let outer = trace();
        found.extend(middle(&inner, &outer).into_iter().filter(|&f| f != 0));
    };
    let once = Once::new();
    let mut inner = Vec::new();
    once.call_once(|| inner = trace());
    keep(inner);
    let once = Once::new();
    let mut inner = Vec::new();
    once.call_once_force(|_| inner = trace());
    keep(inner);
    let lock = OnceLock::new();
    keep(lock.get_or_init(trace).clone());
    let lazy = LazyLock::new(trace);
    keep(LazyLock::force(&lazy).clone());
    // once_cell 1.x, one copy per build (cargo unifies it): its own `initialize_or_wait`.
    let cell = once_cell::sync::OnceCell::new();
    keep(cell.get_or_init(trace).clone());
    found
}

fn known<T>(use_set: impl FnOnce(&mut HashSet<usize>) -> T) -> T {
    let mut known = KNOWN.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    use_set(known.get_or_insert_with(probe))
}

/// Whether `node` was created inside a one-time initializer; decided once and cached.
pub(crate) fn is_singleton(node: &Node) -> bool {
    match node.singleton.load(Ordering::Acquire) {
        NO => return false,
        YES => return true,
        _ => {}
    }
    if node.created_at().is_empty() {
        node.singleton.store(NO, Ordering::Release);
        return false;
    }
    let functions: Vec<usize> = node.created_at().iter().map(|&ip| enclosing(ip)).collect();
    let found = known(|set| functions.iter().any(|f| *f != 0 && set.contains(f)));
    // A concurrent `learn` may have said yes meanwhile: never downgrade it.
    let _ = node.singleton.compare_exchange(
        UNDECIDED,
        if found { YES } else { NO },
        Ordering::AcqRel,
        Ordering::Acquire,
    );
    node.singleton.load(Ordering::Acquire) == YES
}

/// Whether a resolved function name is a one-time initializer std's probe does not know
/// (`once_cell`'s own implementation).
pub(crate) fn is_initializer_name(function: &str) -> bool {
    function.starts_with("once_cell::imp::initialize_or_wait")
}

/// Records that `node` was created inside an initializer recognised by name at the creation
/// frame `ip`, and learns that function's address for later threads.
pub(crate) fn learn(node: &Node, ip: usize) {
    let function = enclosing(ip);
    if function != 0 {
        known(|set| set.insert(function));
    }
    node.singleton.store(YES, Ordering::Release);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The probe finds std's `Once` machinery, and no function of its own caller.
    #[test]
    fn probe_finds_the_once_machinery() {
        let found = probe();
        assert!(!found.is_empty());
        let outside = trace();
        assert!(outside.iter().all(|f| !found.contains(f)));
    }

    /// A backtrace taken inside a `LazyLock` initializer lies in a known function; one taken
    /// outside does not.
    #[test]
    fn inside_an_initializer_is_recognised() {
        static INSIDE: LazyLock<Vec<usize>> = LazyLock::new(trace);
        let inside = known(|set| INSIDE.iter().any(|f| set.contains(f)));
        let outside = known(|set| trace().iter().any(|f| set.contains(f)));
        assert!(inside);
        assert!(!outside);
    }

    /// A backtrace taken inside a `once_cell` initializer lies in a known function too, without
    /// any symbol resolution.
    #[test]
    fn once_cell_initializer_is_recognised() {
        static INSIDE: once_cell::sync::Lazy<Vec<usize>> = once_cell::sync::Lazy::new(trace);
        assert!(known(|set| INSIDE.iter().any(|f| set.contains(f))));
    }
}
