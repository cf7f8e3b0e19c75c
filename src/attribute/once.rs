//! A test registered twice: `#[test]` written above `#[leak_test]` where the macro cannot see it
//! (attributes passed through a `macro_rules!`, code without span locations). rustc's `#[test]`
//! registers the function, `#[leak_test]` adds its own, and libtest runs the test twice under one
//! name. The second run in the process fails with the fix, so the mistake is never silent.

use std::collections::HashSet;
use std::sync::{LazyLock, Mutex, PoisonError};

/// Why the second run fails.
const REGISTERED_TWICE: &str = "is registered twice: a `#[test]` is written above `#[leak_test]` \
     (possibly through a `macro_rules!` or a renamed import), and each registers it, so it runs \
     twice. Write `#[leak_test]` above every other test attribute, or drop the `#[test]` \
     (`#[leak_test]` adds it)";

/// Records that the calling libtest thread runs test `test`; fails if that full test name already
/// ran in this process. Only libtest's own test threads (named after the test) are recorded, so
/// calling a `#[leak_test]` function from another test is never mistaken for a second run.
#[track_caller]
pub(super) fn record(test: &str) {
    static RAN: LazyLock<Mutex<HashSet<String>>> = LazyLock::new(Default::default);
    let thread = std::thread::current();
    let Some(name) = thread.name() else {
        return;
    };
    if name != test && !name.ends_with(&format!("::{test}")) {
        return;
    }
    let mut ran = RAN.lock().unwrap_or_else(PoisonError::into_inner);
    if !ran.insert(name.to_string()) {
        drop(ran);
        panic!("leakcheck: test `{name}` {REGISTERED_TWICE}");
    }
}

#[cfg(test)]
mod tests {
    /// The second run of one test name in a process fails; other names and other threads pass.
    #[test]
    fn second_run_fails() {
        let run = |thread: &str, test: &'static str| {
            std::thread::Builder::new()
                .name(thread.into())
                .spawn(move || super::record(test))
                .unwrap()
                .join()
                .is_ok()
        };
        assert!(run("once::tests::dup", "dup"));
        assert!(run("once::tests::other", "other"));
        assert!(!run("once::tests::dup", "dup"), "second run of the same test");
        assert!(
            run("caller_test", "dup"),
            "called from another test: not recorded"
        );
        assert!(run("caller_test", "dup"));
    }
}
