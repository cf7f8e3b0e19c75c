//! Child processes: a test that leaves a child running fails, naming the command and the line
//! that started it; children waited, killed and waited, or finishing within the settle deadline
//! pass; leaked children are killed and reaped after the report.
//!
//! On Unix and on Windows alike (the sleeping child is `sleep` there, `ping -n` here: see
//! `common::sleeper`); `fork` and zombies are Unix's own.

// The fixtures leak children on purpose.
#![allow(clippy::zombie_processes)]
#![cfg(any(unix, windows))]

use crate::common;

use std::process::Stdio;
use std::time::Duration;

use common::{process_exists, quick_child, run_ignored, sleeper, sleeper_text, LEAK_SETTLE};
use leakcheck::{leak_test, Options};

/// The line of the `spawn` call in `fixture_leaky_std_sleep`.
const STD_SPAWN_LINE: u32 = line!() + 6;

/// Fixture: starts `sleep 30` and drops its `Child` (std neither kills nor waits on drop).
#[leak_test(settle = "300ms")]
#[ignore = "fixture, run by forgotten_std_child_fails_naming_command_and_line"]
fn fixture_leaky_std_sleep() {
    let child = sleeper("30").spawn().unwrap();
    drop(child);
}

/// A forgotten std child fails the test with its command, state, creation line, creating thread
/// and the `kill()` + `wait()` hint; it is killed and reaped after the report.
#[test]
fn forgotten_std_child_fails_naming_command_and_line() {
    let run = run_ignored("fixture_leaky_std_sleep", &[]);
    assert!(!run.success);
    let report = common::failure_section(&run.stdout, "children::fixture_leaky_std_sleep");
    assert!(
        report.contains(&format!("started at tests/it/children.rs:{STD_SPAWN_LINE}")),
        "{report}"
    );
    // The snapshot is Linux's (its `/proc` state, `posix_spawnp`); elsewhere the facts above.
    #[cfg(target_os = "linux")]
    common::report_settings().bind(|| insta::assert_snapshot!(report.trim()));
    assert!(report.contains(&format!("`{}`", sleeper_text("30"))), "{report}");
    let pid = reported_pid(report);
    assert!(!process_exists(pid), "pid {pid} was killed:\n{report}");
}

/// Fixture: a worker thread of the test starts the child.
#[leak_test(settle = "300ms")]
#[ignore = "fixture, run by child_of_a_worker_thread_belongs_to_the_test"]
fn fixture_leaky_from_worker() {
    std::thread::Builder::new()
        .name("spawner".into())
        .spawn(|| {
            let _child = sleeper("31").spawn().unwrap();
        })
        .unwrap()
        .join()
        .unwrap();
}

/// A child started by a thread the test started is the test's, and names that thread.
#[test]
fn child_of_a_worker_thread_belongs_to_the_test() {
    let run = run_ignored("fixture_leaky_from_worker", &[]);
    assert!(!run.success);
    let report = &run.stdout;
    assert!(
        report.contains("1 child process leaked by `children::fixture_leaky_from_worker`"),
        "{report}"
    );
    assert!(report.contains(&format!("`{}`", sleeper_text("31"))), "{report}");
    assert!(report.contains("by thread \"spawner\""), "{report}");
}

/// Fixture: a tokio child dropped without `kill_on_drop`.
#[leak_test(settle = "300ms")]
#[ignore = "fixture, run by tokio_child_without_kill_on_drop_fails"]
async fn fixture_leaky_tokio_child() {
    let child = tokio::process::Command::from(sleeper("32")).spawn().unwrap();
    drop(child);
}

/// A tokio child dropped without `kill_on_drop(true)` fails with the tokio hint.
#[test]
fn tokio_child_without_kill_on_drop_fails() {
    let run = run_ignored("fixture_leaky_tokio_child", &[]);
    assert!(!run.success);
    let report = &run.stdout;
    assert!(
        report.contains("1 child process leaked by `children::fixture_leaky_tokio_child`"),
        "{report}"
    );
    assert!(report.contains(&format!("`{}`", sleeper_text("32"))), "{report}");
    assert!(report.contains("kill_on_drop(true)"), "{report}");
    assert!(report.contains("started at tests/it/children.rs:"), "{report}");
}

/// Fixture: a raw `fork` whose child waits forever.
#[cfg(unix)]
#[leak_test(settle = "300ms")]
#[ignore = "fixture, run by raw_fork_is_seen"]
fn fixture_leaky_raw_fork() {
    // SAFETY: the child only calls async-signal-safe functions.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        loop {
            // SAFETY: pause is async-signal-safe.
            unsafe { libc::pause() };
        }
    }
    assert!(pid > 0);
}

/// A child created by a raw `fork` from C-level code is seen too.
#[cfg(unix)]
#[test]
fn raw_fork_is_seen() {
    let run = run_ignored("fixture_leaky_raw_fork", &[]);
    assert!(!run.success);
    let report = &run.stdout;
    assert!(
        report.contains("1 child process leaked by `children::fixture_leaky_raw_fork`"),
        "{report}"
    );
    assert!(report.contains("(`fork`)"), "{report}");
    assert!(report.contains("started at tests/it/children.rs:"), "{report}");
}

/// Fixture: a child waited for.
#[leak_test]
#[ignore = "fixture, verdict compared by scripts/nextest_verdicts.py"]
fn fixture_clean_child_waited() {
    let mut child = sleeper("0.1").spawn().unwrap();
    child.wait().unwrap();
}

/// A child waited for passes.
#[leak_test]
fn child_waited_passes() {
    let mut child = sleeper("0.1").spawn().unwrap();
    child.wait().unwrap();
}

/// A child killed and waited for passes.
#[leak_test]
fn child_killed_and_waited_passes() {
    let mut child = sleeper("30").spawn().unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
}

/// `Command::status` and `Command::output` wait for their children.
#[leak_test]
fn status_and_output_pass() {
    assert!(quick_child().status().unwrap().success());
    let output = if cfg!(windows) {
        std::process::Command::new("cmd")
            .args(["/c", "echo hi"])
            .output()
            .unwrap()
    } else {
        std::process::Command::new("echo").arg("hi").output().unwrap()
    };
    assert_eq!(String::from_utf8_lossy(&output.stdout).trim_end(), "hi");
}

/// A tokio child built with `kill_on_drop(true)` passes, whether or not tokio reaped it yet.
#[leak_test]
async fn tokio_kill_on_drop_passes() {
    let child = tokio::process::Command::from(sleeper("30"))
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    drop(child);
}

/// A tokio child awaited passes.
#[leak_test(flavor = "multi_thread", worker_threads = 2)]
async fn tokio_child_awaited_passes() {
    let status = tokio::process::Command::from(quick_child())
        .status()
        .await
        .unwrap();
    assert!(status.success());
}

/// A child that exits within the settle deadline passes (dropped unwaited: a zombie on Unix, not a
/// leak).
#[leak_test(settle = "5s")]
fn child_exiting_within_the_deadline_passes() {
    let child = sleeper("0.3").spawn().unwrap();
    drop(child);
}

/// `find` reports a running child, counts it, and kills it afterwards.
#[test]
fn find_reports_and_kills_a_running_child() {
    let child = sleeper("33").spawn().unwrap();
    let pid = child.id() as i32;
    let error = Options::new().settle(LEAK_SETTLE).find().unwrap_err();
    assert_eq!(error.processes(), 1, "{error}");
    assert_eq!(error.threads(), 0, "{error}");
    let json = error.to_json().unwrap();
    let value: serde_json::Value = serde_json::from_str(&json).unwrap();
    let survivor = &value["survivors"][0];
    assert_eq!(survivor["kind"], "process", "{json}");
    assert_eq!(survivor["pid"], pid, "{json}");
    assert_eq!(survivor["command"], sleeper_text("33").as_str(), "{json}");
    assert!(
        survivor["origin"]
            .as_str()
            .unwrap()
            .contains("tests/it/children.rs:"),
        "{json}"
    );
    assert!(
        survivor["hint"]["fix"].as_str().unwrap().contains("kill()"),
        "{json}"
    );
    assert!(!process_exists(pid), "killed after the report");
    drop(child);
}

/// `ignore_process` hides a child by program name or glob; `kill_children(false)` leaves it.
#[test]
fn ignore_process_hides_the_child() {
    let mut child = sleeper("34").spawn().unwrap();
    let patterns = if cfg!(windows) {
        ["ping", "pin*", "ping -n 3? 127.0.0.1", "/no/such/*"]
    } else {
        ["sleep", "sle*", "sleep 3?", "/no/such/*"]
    };
    for pattern in patterns {
        let verdict = Options::new()
            .settle(Duration::from_millis(100))
            .ignore_process(pattern)
            .kill_children(false)
            .find();
        assert_eq!(verdict.is_ok(), pattern != "/no/such/*", "{pattern}: {verdict:?}");
    }
    assert!(child.try_wait().unwrap().is_none(), "left running");
    child.kill().unwrap();
    child.wait().unwrap();
}

/// Fixture: a child hidden by the attribute's `ignore_process` (it ends by itself in 3 s).
#[leak_test(settle = "100ms", ignore_process = ["no-such-program", "sleep ?", "ping -n ? 127.0.0.1"])]
#[ignore = "fixture, run by ignore_process_attribute_hides_the_child"]
fn fixture_clean_ignored_process() {
    let _child = sleeper("3")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
}

/// `#[leak_test(ignore_process = [...])]` hides a matching child, and leaves it running.
#[test]
fn ignore_process_attribute_hides_the_child() {
    let run = run_ignored("fixture_clean_ignored_process", &[]);
    assert!(run.success, "{}{}", run.stdout, run.stderr);
}

/// Fixture: a leaked child that ends by itself soon, its output not inherited (for the opt-outs).
#[leak_test(settle = "200ms")]
#[ignore = "fixture, run by opt_outs"]
fn fixture_leaky_short_child() {
    let _child = sleeper("5")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
}

/// `LEAKCHECK=off` checks no child; `LEAKCHECK_KILL_CHILDREN=off` reports but leaves it running.
#[test]
fn opt_outs() {
    let run = common::run_ignored_leaving_children("fixture_leaky_short_child", &[("LEAKCHECK", "off")]);
    assert!(run.success, "{}{}", run.stdout, run.stderr);
    let run = common::run_ignored_leaving_children(
        "fixture_leaky_short_child",
        &[("LEAKCHECK_KILL_CHILDREN", "off")],
    );
    assert!(!run.success);
    assert!(run.stdout.contains("were left running"), "{}", run.stdout);
    let pid = reported_pid(&run.stdout);
    assert!(process_exists(pid), "left running");
    common::end_process(pid);
}

/// `dump()` lists the process's children with the thread that started each.
#[test]
fn dump_lists_children_with_their_creators() {
    let mut child = std::thread::Builder::new()
        .name("dump-spawner".into())
        .spawn(|| sleeper("37").spawn().unwrap())
        .unwrap()
        .join()
        .unwrap();
    let dump = leakcheck::dump();
    let listed = dump
        .children()
        .find(|listed| listed.pid() == child.id() as i32)
        .expect("the child is listed");
    assert_eq!(listed.command(), sleeper_text("37"));
    assert_eq!(listed.creator(), Some("dump-spawner"));
    let text = dump.to_string();
    assert!(text.contains(&format!("`{}`", sleeper_text("37"))), "{text}");
    assert!(
        text.contains("started by thread \"dump-spawner\" at tests/it/children.rs:"),
        "{text}"
    );
    child.kill().unwrap();
    child.wait().unwrap();
}

/// Fixture: leaks a thread, and leaves a child that exited unwaited (a zombie).
#[cfg(target_os = "linux")]
#[leak_test(settle = "300ms")]
#[ignore = "fixture, run by zombie_is_a_note_not_a_failure"]
fn fixture_leaky_thread_and_zombie() {
    let child = std::process::Command::new("true").spawn().unwrap();
    let stat = format!("/proc/{}/stat", child.id());
    while !std::fs::read_to_string(&stat).is_ok_and(|text| text.contains(") Z ")) {
        std::thread::sleep(Duration::from_millis(5));
    }
    drop(child);
    common::leak_named_thread("zombie-keeper");
}

/// A zombie is not a failure: a report failing for a leaked thread names it in a note, and does
/// not count it.
#[cfg(target_os = "linux")]
#[test]
fn zombie_is_a_note_not_a_failure() {
    let run = run_ignored("fixture_leaky_thread_and_zombie", &[]);
    assert!(!run.success);
    let report = &run.stdout;
    assert!(
        report.contains("leakcheck: 1 thread leaked by `children::fixture_leaky_thread_and_zombie`"),
        "{report}"
    );
    assert!(report.contains("never waited for (a zombie"), "{report}");
    assert!(report.contains("`true`"), "{report}");
}

/// `LEAKCHECK_LINEAGE=off` forces the before/after diff of the process's children: it still
/// catches the leak, passes a clean test, and says which mode it used.
#[test]
fn fallback_diff_catches_children_and_says_so() {
    let run = run_ignored("fixture_leaky_std_sleep", &[("LEAKCHECK_LINEAGE", "off")]);
    assert!(!run.success);
    assert!(
        run.stdout.contains(&format!("`{}`", sleeper_text("30"))),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout
            .contains("compared the process's child processes before and after"),
        "{}",
        run.stdout
    );
    let run = run_ignored("fixture_clean_child_waited", &[("LEAKCHECK_LINEAGE", "off")]);
    assert!(run.success, "{}{}", run.stdout, run.stderr);
}

/// The first `(pid N)` of a report.
fn reported_pid(report: &str) -> i32 {
    let start = report.find("(pid ").expect("a pid in the report") + 5;
    let digits: String = report[start..].chars().take_while(char::is_ascii_digit).collect();
    digits.parse().unwrap()
}
