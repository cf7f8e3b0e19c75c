//! Platforms without a stack capture implementation: says so for every thread.

use super::{Captured, Policy};
use std::time::Duration;

/// Why no stack of another thread can be captured here, shown in reports.
const WHY: &str =
    "capturing other threads' stacks is implemented only for Linux with glibc, macOS and Windows";

/// See [`super::capture`]: every thread is [`Captured::Unsupported`].
pub(super) fn capture(tids: &[i32], _timeout: Duration, _policy: Policy) -> Vec<Captured> {
    vec![Captured::Unsupported(WHY); tids.len()]
}
