//! Own binary: trybuild compiles each case with cargo, minutes of work no other test should wait for.
//!
//! Compile-fail tests of `#[leak_test]` misuse: each `tests/ui/*.rs` must fail to compile with
//! exactly the errors in its `.stderr` (regenerate with `TRYBUILD=overwrite`, then review).

/// Every misuse in `tests/ui/` is rejected with the expected message.
#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/*.rs");
}
