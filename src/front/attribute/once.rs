//! A test registered twice: `#[test]` written above `#[leak_test]` where the macro cannot see it
//! (attributes passed through a `macro_rules!`, code without span locations). rustc's `#[test]`
//! registers the function, `#[leak_test]` adds its own, and libtest runs the test twice under one
//! name. The second run in the process fails with the fix, so the mistake is never silent.

use std::sync::atomic::{AtomicBool, Ordering};

/// Why the second run fails.
const REGISTERED_TWICE: &str = "is registered twice: a `#[test]` is written above `#[leak_test]` \
     (possibly through a `macro_rules!` or a renamed import), and each registers it, so it runs \
     twice. Write `#[leak_test]` above every other test attribute, or drop the `#[test]` \
     (`#[leak_test]` adds it)";

/// One `#[leak_test]` function, as its expansion declares it in a `static`: its name, and whether
/// it already ran on a libtest thread of its own in this process.
pub struct Test {
    pub(crate) name: &'static str,
    ran: AtomicBool,
}

impl Test {
    /// The test function `name`, not run yet.
    pub const fn new(name: &'static str) -> Test {
        Test {
            name,
            ran: AtomicBool::new(false),
        }
    }
}

/// Records that the calling libtest thread runs `test`; fails if that function already ran on a
/// thread named after it in this process. Only libtest's own test threads (named after the test)
/// count, so calling a `#[leak_test]` function from another test, or from rstest's cases (named
/// `my_test::case_1`), is never mistaken for a second run.
///
/// One flag per function, not a set of names: this runs once per test, in the unoptimised builds
/// `cargo test` makes, where a `HashSet<String>` insert costs thousands of instructions.
#[track_caller]
pub(super) fn record(test: &Test) {
    if ran_before(&test.ran, test.name) {
        let thread = std::thread::current();
        let name = thread.name().unwrap_or(test.name);
        panic!("leakcheck: test `{name}` {REGISTERED_TWICE}");
    }
}

/// Whether the calling thread is libtest's thread for the test function `test` (named after it,
/// with or without its module path) and that function already ran on such a thread in this
/// process (`ran`, one flag per function).
fn ran_before(ran: &AtomicBool, test: &str) -> bool {
    let thread = std::thread::current();
    let Some(name) = thread.name() else {
        return false;
    };
    let own = name == test
        || name
            .strip_suffix(test)
            .is_some_and(|module| module.ends_with("::"));
    own && ran.swap(true, Ordering::Relaxed)
}

#[cfg(test)]
mod tests {
    /// The second run of one test name in a process fails; other names and other threads pass.
    #[test]
    fn second_run_fails() {
        static DUP: super::Test = super::Test::new("dup");
        static OTHER: super::Test = super::Test::new("other");
        let run = |thread: &str, test: &'static super::Test| {
            std::thread::Builder::new()
                .name(thread.into())
                .spawn(move || super::record(test))
                .unwrap()
                .join()
                .is_ok()
        };
        assert!(run("once::tests::dup", &DUP));
        assert!(run("once::tests::other", &OTHER));
        assert!(!run("once::tests::dup", &DUP), "second run of the same test");
        assert!(run("caller_test", &DUP), "called from another test: not recorded");
        assert!(run("caller_test", &DUP));
    }
}
