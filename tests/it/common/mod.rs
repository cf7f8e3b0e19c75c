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

impl Run {
    /// The report of a whole-binary check (`check_binary!`, on stderr) of a run that must have
    /// failed.
    #[track_caller]
    pub fn binary_report(&self) -> &str {
        assert!(
            !self.success,
            "the run must fail:\n{}{}",
            self.stdout, self.stderr
        );
        &self.stderr
    }

    /// Asserts the run passed and leakcheck printed nothing on stderr.
    #[track_caller]
    pub fn assert_clean_pass(&self) {
        assert!(self.success, "the run must pass:\n{}{}", self.stdout, self.stderr);
        assert!(!self.stderr.contains("leakcheck"), "{}", self.stderr);
    }
}

/// Re-runs this binary on `test` with the short settle deadline the whole-binary check's tests use.
#[track_caller]
pub fn run_binary_check(test: &str) -> Run {
    run_ignored(test, &[("LEAKCHECK_SETTLE", "200ms")])
}

/// Re-runs the current test binary on `test` (which is `#[ignore]`d in normal runs), named as the
/// calling file's module names it (see [`test_path`]).
#[track_caller]
pub fn run_ignored(test: &str, envs: &[(&str, &str)]) -> Run {
    let output = rerun(&test_path(test), envs)
        .output()
        .expect("re-run the test binary");
    Run {
        success: output.status.success(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// [`run_ignored`] with the output through files rather than pipes, for a run that leaves a child
/// process behind: the child inherits the run's output handles (on Windows, every inheritable
/// handle passes to a child), and reading a pipe would wait until that child ended.
#[track_caller]
pub fn run_ignored_leaving_children(test: &str, envs: &[(&str, &str)]) -> Run {
    let test = test_path(test);
    let base = std::env::temp_dir().join(format!(
        "leakcheck-{}-{}",
        std::process::id(),
        test.replace(':', "_")
    ));
    let (out, err) = (base.with_extension("out"), base.with_extension("err"));
    let status = rerun(&test, envs)
        .stdout(std::fs::File::create(&out).expect("output file"))
        .stderr(std::fs::File::create(&err).expect("output file"))
        .status()
        .expect("re-run the test binary");
    let read = |path: &std::path::Path| {
        let text = String::from_utf8_lossy(&std::fs::read(path).unwrap_or_default()).into_owned();
        let _ = std::fs::remove_file(path);
        text
    };
    Run {
        success: status.success(),
        stdout: read(&out),
        stderr: read(&err),
    }
}

/// The command that re-runs this test binary on exactly `test`.
fn rerun(test: &str, envs: &[(&str, &str)]) -> Command {
    let exe = std::env::current_exe().expect("test binary path");
    let mut command = Command::new(exe);
    command.args(["--ignored", "--exact", test, "--test-threads=1"]);
    command.env_remove("LEAKCHECK_JSON");
    for (key, value) in envs {
        command.env(key, value);
    }
    command
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

/// The header line (`×N threads "name" ...`) of the block for thread `name` in `report`.
#[track_caller]
pub fn header_line(report: &str, name: &str) -> String {
    report
        .lines()
        .find(|line| line.starts_with('×') && line.contains(&format!("\"{name}\"")))
        .unwrap_or_else(|| panic!("no block for {name}:\n{report}"))
        .to_string()
}

/// insta settings that normalise a report to what a reviewer reads and what holds on every run and
/// machine: thread and process ids, elapsed times and wake-ups, addresses, absolute paths, rustc's
/// symbol hashes, v0 closure names and generic arguments, the number of folded library frames
/// (which differs between build modes) and line numbers in these helpers become `[placeholders]`.
///
/// `common::report_settings().bind(|| insta::assert_snapshot!(report))` pins a whole report
/// (`INSTA_UPDATE=always cargo test` writes the `.snap`; read it before committing).
pub fn report_settings() -> insta::Settings {
    let root = regex_escape(env!("CARGO_MANIFEST_DIR"));
    let mut settings = insta::Settings::clone_current();
    for (pattern, replacement) in [
        (r"\b(tids?) \d+(?:, \d+)*", "$1 [tid]"),
        (r"\b(pids?) \d+(?:, \d+)*", "$1 [pid]"),
        (r"\b\d+(?:\.\d+)?(?:ns|µs|ms|s) ago\b", "[elapsed] ago"),
        // How often a blocked thread woke in the settle window varies with scheduling.
        (
            r"\b(?:no wake-up|woke once|woke \d+ times) in \d+(?:\.\d+)?(?:ns|µs|ms|s)\b",
            "[wake-ups] in [elapsed]",
        ),
        (r"\bwoken \d+ times\b", "woken [n] times"),
        // Whether the settle ended early depends on what else the machine runs.
        (
            r"note: (?:waited \d+(?:\.\d+)?(?:ms|s) for them to finish|stopped waiting before the settle deadline [^(]*\([^)]*\)[^(]*)\(settle",
            "note: [settled] (settle",
        ),
        (r"\bin \d+(?:\.\d+)?(?:ns|µs|ms|s)\b", "in [elapsed]"),
        (r"\b0x[0-9a-f]+\b", "[addr]"),
        (r"/rustc/[0-9a-f]{40}", "/rustc/[hash]"),
        (r"::h[0-9a-f]{16}\b", ""),
        (r"\{closure#\d+\}", "{{closure}}"),
        // Legacy symbols name a generic type's parameters (`Channel<T>`), v0 ones its arguments.
        (r"(\w)<[\w\s,()&']*>::", "$1<_>::"),
        (r"\.\.\. \d+ library frames?", "... [n] library frames"),
        (r"(tests/it/common/mod\.rs):\d+", "$1:[line]"),
        (r"\S*/registry/src/[^/\s]+/", "[registry]/"),
        (root.as_str(), "[root]"),
    ] {
        settings.add_filter(pattern, replacement);
    }
    settings
}

/// `text` as a regex that matches it literally.
fn regex_escape(text: &str) -> String {
    text.chars()
        .flat_map(|c| {
            let escape = "\\.+*?()|[]{}^$#&-~".contains(c);
            escape.then_some('\\').into_iter().chain([c])
        })
        .collect()
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

/// A child that sleeps about `secs` seconds: `sleep secs` on Unix; on Windows `ping -n N
/// 127.0.0.1` (one echo a second, `secs` rounded, plus one; output discarded), which Wine has
/// too (its `timeout` needs a console).
pub fn sleeper(secs: &str) -> Command {
    if cfg!(windows) {
        let mut command = Command::new("ping");
        command
            .args(["-n", &pings(secs), "127.0.0.1"])
            .stdout(std::process::Stdio::null());
        command
    } else {
        let mut command = Command::new("sleep");
        command.arg(secs);
        command
    }
}

/// The command line a report shows for [`sleeper`]`(secs)`.
pub fn sleeper_text(secs: &str) -> String {
    if cfg!(windows) {
        format!("ping -n {} 127.0.0.1", pings(secs))
    } else {
        format!("sleep {secs}")
    }
}

/// How many echoes `ping` sends to take `secs` seconds (one second apart).
fn pings(secs: &str) -> String {
    (secs.parse::<f64>().expect("seconds").round() as u64 + 1).to_string()
}

/// A child that exits at once, successfully: `true`, or `cmd /c exit 0` on Windows.
pub fn quick_child() -> Command {
    if cfg!(windows) {
        let mut command = Command::new("cmd");
        command.args(["/c", "exit 0"]);
        command
    } else {
        Command::new("true")
    }
}

/// Whether process `pid` still runs (on Linux a zombie counts).
pub fn process_exists(pid: i32) -> bool {
    #[cfg(windows)]
    {
        use windows_sys::Win32::Foundation::{CloseHandle, WAIT_TIMEOUT};
        use windows_sys::Win32::System::Threading::{OpenProcess, WaitForSingleObject, PROCESS_SYNCHRONIZE};
        // SAFETY: plain arguments; the handle is checked, then closed.
        unsafe {
            let handle = OpenProcess(PROCESS_SYNCHRONIZE, 0, pid as u32);
            if handle.is_null() {
                return false;
            }
            let running = WaitForSingleObject(handle, 0) == WAIT_TIMEOUT;
            CloseHandle(handle);
            running
        }
    }
    #[cfg(not(windows))]
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}

/// Ends process `pid` (`SIGKILL`; `TerminateProcess` on Windows), for a child a fixture left.
pub fn end_process(pid: i32) {
    #[cfg(windows)]
    {
        use windows_sys::Win32::Foundation::CloseHandle;
        use windows_sys::Win32::System::Threading::{OpenProcess, TerminateProcess, PROCESS_TERMINATE};
        // SAFETY: plain arguments; the handle is checked, then closed.
        unsafe {
            let handle = OpenProcess(PROCESS_TERMINATE, 0, pid as u32);
            if !handle.is_null() {
                TerminateProcess(handle, 1);
                CloseHandle(handle);
            }
        }
    }
    #[cfg(not(windows))]
    // SAFETY: signalling a process by pid.
    unsafe {
        libc::kill(pid, libc::SIGKILL);
    }
}
