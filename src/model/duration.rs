//! Durations in humantime's forms (`500ms`, `2s`, `1.5s`, `2 seconds`, `1m`): the one parser
//! for `LEAKCHECK_SETTLE` and the project's `settle` (the attribute's is humantime too).

use std::time::Duration;

/// Parses a duration in humantime's format: `500ms`, `2s`, `1.5s`, `2 seconds`, `1m`, `1m 30s`.
/// The `#[leak_test(settle = "...")]` attribute parses with the same crate, so both accept the
/// same strings.
pub(crate) fn parse(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text.trim()).map_err(|error| format!("{DURATION_FORMS} ({error})"))
}

/// What a valid duration looks like, for error messages.
pub(crate) const DURATION_FORMS: &str = "expected a duration like `500ms`, `2s`, `1.5s`, `2 seconds` or `1m`";
