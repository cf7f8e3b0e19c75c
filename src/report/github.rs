//! GitHub Actions annotations: under `GITHUB_ACTIONS=true`, each leak prints one
//! `::error file=…,line=…::` workflow command, which GitHub shows on the pull request's diff at
//! the test's line.

use std::io::Write as _;

use super::Report;
use crate::config;

impl Report {
    /// Prints the report's annotations when running under GitHub Actions: one per leaking test.
    ///
    /// Written to the process's stderr directly, not through `eprintln!`, which libtest captures:
    /// the runner reads workflow commands from the job's log as lines are printed.
    pub(crate) fn annotate(&self) {
        if !config::github_actions() {
            return;
        }
        let mut out = std::io::stderr().lock();
        for line in self.annotations() {
            let _ = writeln!(out, "{line}");
        }
    }

    /// The `::error` lines for this report: the test's own line when known; for the whole-binary
    /// check, one per test that started survivors, at the first survivor's creation site.
    pub(crate) fn annotations(&self) -> Vec<String> {
        if !self.name_tests {
            let message = format!("{} leaked by `{}`", self.summary(), self.test);
            return vec![annotation(self.location.as_ref(), &message)];
        }
        // (test, where its first survivor was created, how many survivors it left)
        let mut tests: Vec<(String, Option<Location>, usize)> = Vec::new();
        for survivor in &self.survivors {
            let test = survivor.test.clone().unwrap_or_else(|| self.test.clone());
            match tests.iter_mut().find(|(name, _, _)| *name == test) {
                Some(entry) => entry.2 += 1,
                None => {
                    let site = test_frame(survivor, &test)
                        .or_else(|| survivor.origin().and_then(|origin| file_line(&origin)));
                    tests.push((test, site, 1));
                }
            }
        }
        tests
            .iter()
            .map(|(test, site, count)| {
                let noun = survivor_noun(self, *count);
                let message = format!("{count} {noun} leaked by `{test}` (whole-binary check)");
                annotation(site.as_ref(), &message)
            })
            .collect()
    }
}

/// A `file`, `line` pair.
type Location = (String, u32);

fn survivor_noun(report: &Report, count: usize) -> &'static str {
    let all_threads = report
        .survivors
        .iter()
        .all(|s| s.kind == crate::model::Kind::Thread);
    match (all_threads, count) {
        (true, 1) => "thread",
        (true, _) => "threads",
        (false, 1) => "survivor",
        (false, _) => "survivors",
    }
}

/// One workflow command; `file` and `line` are escaped as GitHub's properties require.
fn annotation(location: Option<&Location>, message: &str) -> String {
    let properties = match location {
        Some((file, line)) => format!(" file={},line={line},", escape_property(file)),
        None => " ".to_string(),
    };
    format!("::error{properties}title=leakcheck::{}", escape_data(message))
}

/// The test function's own frame in the survivor's creation backtrace: where the test called
/// what started the thread.
fn test_frame(survivor: &crate::model::Survivor, test: &str) -> Option<Location> {
    let name = test.rsplit("::").next()?;
    let frame = survivor
        .created_at
        .iter()
        .find(|frame| frame.key == name || frame.key.ends_with(&format!("::{name}")))?;
    file_line(&crate::model::frame::short_location(frame)?)
}

/// `tests/x.rs:12 in f` or `tests/x.rs:12` into (`tests/x.rs`, 12).
fn file_line(origin: &str) -> Option<Location> {
    let location = origin.split(" in ").next()?;
    let (file, line) = location.rsplit_once(':')?;
    Some((file.to_string(), line.parse().ok()?))
}

fn escape_data(text: &str) -> String {
    text.replace('%', "%25").replace('\r', "%0D").replace('\n', "%0A")
}

fn escape_property(text: &str) -> String {
    escape_data(text).replace(':', "%3A").replace(',', "%2C")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Properties and data are escaped as the workflow-command syntax requires.
    #[test]
    fn escapes() {
        let line = annotation(Some(&("tests/a,b.rs".into(), 7)), "1 thread\nleaked");
        assert_eq!(
            line,
            "::error file=tests/a%2Cb.rs,line=7,title=leakcheck::1 thread%0Aleaked"
        );
        assert_eq!(annotation(None, "x"), "::error title=leakcheck::x");
        assert_eq!(file_line("tests/x.rs:12 in f"), Some(("tests/x.rs".into(), 12)));
        assert_eq!(file_line("f"), None);
    }
}
