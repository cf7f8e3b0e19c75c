//! No silent double registration: `#[test]` above `#[leak_test]` is a compile error where the
//! source shows it (a renamed import, a `macro_rules!` that writes `#[test]`), and a test that is
//! registered twice anyway fails its second run.
//!
//! rustc removes `#[test]` items unless it builds a test harness, which trybuild never does, so
//! the compile cases in `tests/test_mode/` are compiled here with `rustc --test` against the
//! `leakcheck` this test binary was built with.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::Command;

use leakcheck::leak_test as checked;

const WRONG_ORDER: &str = "`#[leak_test]` must be placed above `#[test]`: below it, the test is \
     registered twice; move `#[leak_test]` up, or drop `#[test]` (`#[leak_test]` adds it)";

/// The newest `libleakcheck-*.rlib` next to this test binary.
fn leakcheck_rlib(deps: &Path) -> PathBuf {
    std::fs::read_dir(deps)
        .expect("deps dir")
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| {
            let name = path.file_name().unwrap().to_string_lossy();
            name.starts_with("libleakcheck-") && name.ends_with(".rlib")
        })
        .max_by_key(|path| path.metadata().and_then(|m| m.modified()).ok())
        .expect("libleakcheck rlib")
}

/// Compiles `tests/test_mode/{case}.rs` as a test harness (metadata only); returns rustc's
/// stderr if it failed, `None` if it compiled.
fn compile_as_test(case: &str) -> Option<String> {
    let exe = std::env::current_exe().unwrap();
    let deps = exe.parent().unwrap();
    let out = std::env::temp_dir().join(format!("leakcheck-test-mode-{}-{case}", std::process::id()));
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let output = Command::new(rustc)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args([
            "--edition",
            "2021",
            "--test",
            "--emit=metadata",
            "--crate-name",
            "case",
        ])
        .arg(format!("tests/test_mode/{case}.rs"))
        .arg("--out-dir")
        .arg(&out)
        .arg("-L")
        .arg(format!("dependency={}", deps.display()))
        .arg("--extern")
        .arg(format!("leakcheck={}", leakcheck_rlib(deps).display()))
        .output()
        .expect("run rustc");
    let _ = std::fs::remove_dir_all(&out);
    (!output.status.success()).then(|| String::from_utf8_lossy(&output.stderr).into_owned())
}

/// `#[test]` above `#[leak_test]` imported as `checked` is a compile error at the attribute.
#[test]
fn renamed_import_below_test_is_rejected() {
    let stderr = compile_as_test("test-above-renamed-leak-test").expect("must not compile");
    assert!(stderr.contains(WRONG_ORDER), "{stderr}");
    assert!(
        stderr.contains("tests/test_mode/test-above-renamed-leak-test.rs:5:1"),
        "{stderr}"
    );
}

/// A `macro_rules!` that writes `#[test]` above the attributes it is given is a compile error.
#[test]
fn macro_rules_writing_test_above_is_rejected() {
    let stderr = compile_as_test("test-above-leak-test-in-macro-rules").expect("must not compile");
    assert!(stderr.contains(WRONG_ORDER), "{stderr}");
}

/// Attributes passed through a `macro_rules!` compile (nothing to see in the source)...
#[test]
fn attributes_passed_through_macro_rules_compile() {
    let stderr = compile_as_test("test-above-leak-test-passed-through-macro-rules");
    assert_eq!(stderr, None);
}

macro_rules! tests {
    ($($(#[$attr:meta])* fn $name:ident() $body:block)*) => {
        $($(#[$attr])* fn $name() $body)*
    };
}

tests! {
    /// Registered twice, by `#[test]` and by `#[leak_test]` (renamed), through a macro. Not named
    /// `fixture_*`: libtest lists it twice, which `scripts/nextest_verdicts.py` cannot key.
    #[test]
    #[checked]
    #[ignore]
    fn registered_twice_by_macro() {}
}

/// ...and the second run of such a test fails, saying why.
#[test]
fn second_registration_fails_at_run_time() {
    let run = common::run_ignored("registered_twice_by_macro", &[]);
    assert!(!run.success, "{}\n{}", run.stdout, run.stderr);
    assert!(run.stdout.contains("running 2 tests"), "{}", run.stdout);
    assert!(run.stdout.contains("1 passed; 1 failed"), "{}", run.stdout);
    assert!(
        run.stdout.contains(
            "leakcheck: test `registration::registered_twice_by_macro` is registered twice: a `#[test]` is \
             written above `#[leak_test]`"
        ),
        "{}",
        run.stdout
    );
}

/// The right order, through the same macro, registers the test once and passes.
mod right_order {
    tests! {
        /// `#[leak_test]` above `#[test]`: one registration.
        #[super::checked]
        #[test]
        fn registered_once() {}
    }
}
