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

/// Re-runs the current test binary on `test` (which is `#[ignore]`d in normal runs).
pub fn run_ignored(test: &str, envs: &[(&str, &str)]) -> Run {
    let exe = std::env::current_exe().expect("test binary path");
    let mut command = Command::new(exe);
    command.args(["--ignored", "--exact", test, "--test-threads=1"]);
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
