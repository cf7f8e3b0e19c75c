//! Helpers shared by the integration tests: leaks that can be released (goleak's
//! `startBlockedG().unblock()`), and re-running this test binary on one test.
#![allow(dead_code)]

use std::process::Command;
use std::time::Duration;

/// A short settle deadline for tests that expect a leak: long enough that finishing work is not
/// blamed, short enough to keep the suite fast.
pub const LEAK_SETTLE: Duration = Duration::from_millis(300);

/// Output of this test binary re-run on exactly one (ignored) test.
pub struct Run {
    pub success: bool,
    pub stdout: String,
    pub stderr: String,
}

/// libtest's full name for `test`, a function of the calling file: in the shared binary
/// (`tests/it/threads.rs`) it is `threads::test`; in a binary of its own, just `test`.
#[track_caller]
pub fn test_path(test: &str) -> String {
    let file = std::path::Path::new(std::panic::Location::caller().file());
    match (file.parent().and_then(|dir| dir.file_name()), file.file_stem()) {
        (Some(dir), Some(module)) if dir == "it" && module != "main" => {
            format!("{}::{test}", module.to_string_lossy())
        }
        _ => test.to_string(),
    }
}

/// Re-runs the current test binary on `test` (which is `#[ignore]`d in normal runs), named as the
/// calling file's module names it (see [`test_path`]).
#[track_caller]
pub fn run_ignored(test: &str, envs: &[(&str, &str)]) -> Run {
    let test = test_path(test);
    let exe = std::env::current_exe().expect("test binary path");
    let mut command = Command::new(exe);
    command.args(["--ignored", "--exact", &test, "--test-threads=1"]);
    command.env_remove("LEAKCHECK_JSON");
    for (key, value) in envs {
        command.env(key, value);
    }
    let output = command.output().expect("re-run the test binary");
    Run {
        success: output.status.success(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// The failures section of libtest's output for `test` (from its `---- test stdout ----`
/// header to the next one), or `""` if it has none.
pub fn failure_section<'a>(stdout: &'a str, test: &str) -> &'a str {
    let header = format!("---- {test} stdout ----");
    let Some(start) = stdout.find(&header) else {
        return "";
    };
    let rest = &stdout[start + header.len()..];
    let end = rest
        .find("\n---- ")
        .or_else(|| rest.find("\nfailures:"))
        .unwrap_or(rest.len());
    &rest[..end]
}

/// Leaks a thread named `name`, blocked until the process exits (for fixtures whose report is
/// checked from outside).
pub fn leak_named_thread(name: &str) {
    let (keep, wait) = std::sync::mpsc::channel::<()>();
    std::thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            let _ = wait.recv();
        })
        .expect("spawn");
    std::mem::forget(keep);
}
