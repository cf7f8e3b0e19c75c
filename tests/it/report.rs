//! Reports as users see them: re-run this binary on one leaking fixture and check the output.

use crate::common;

use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use common::run_ignored;
use leakcheck::{leak_test, Options};

#[inline(never)]
fn reply_worker_send(replies: mpsc::SyncSender<u32>) {
    let _ = replies.send(1);
}

/// Fixture: ten identical workers blocked sending, and their receiver kept but never read.
#[leak_test(settle = "300ms")]
#[ignore = "fixture, run by ten_identical_threads_are_one_group"]
fn fixture_ten_blocked_senders() {
    let (replies, inbox) = mpsc::sync_channel::<u32>(0);
    for _ in 0..10 {
        let replies = replies.clone();
        thread::Builder::new()
            .name("mailbox".into())
            .spawn(move || reply_worker_send(replies))
            .unwrap();
    }
    std::mem::forget(inbox);
}

/// Ten identical leaked threads make one `×10` block that names the stuck function with
/// file:line, the creation site, and the blocked-send hint.
#[test]
fn ten_identical_threads_are_one_group() {
    let run = run_ignored("fixture_ten_blocked_senders", &[]);
    assert!(!run.success);
    let report = common::failure_section(&run.stdout, "report::fixture_ten_blocked_senders");
    assert_eq!(report.matches("×").count(), 1, "one group:\n{report}");
    common::report_settings().bind(|| insta::assert_snapshot!(report.trim()));
}

/// Fixture: a leak written to the JSON lines file.
#[leak_test(settle = "200ms")]
#[ignore = "fixture, run by json_lines_hold_every_survivor"]
fn fixture_json_leak() {
    let (replies, inbox) = mpsc::sync_channel::<u32>(0);
    for i in 0..3 {
        let replies = replies.clone();
        thread::Builder::new()
            .name(format!("json-{i}"))
            .spawn(move || reply_worker_send(replies))
            .unwrap();
    }
    std::mem::forget(inbox);
}

/// `LEAKCHECK_JSON` gets one parseable line per verdict, holding every survivor.
#[test]
fn json_lines_hold_every_survivor() {
    let path = std::env::temp_dir().join(format!("leakcheck-json-{}.jsonl", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let run = run_ignored("fixture_json_leak", &[("LEAKCHECK_JSON", path.to_str().unwrap())]);
    assert!(!run.success);
    let text = std::fs::read_to_string(&path).expect("the JSON file was written");
    let _ = std::fs::remove_file(&path);
    let lines: Vec<_> = text.lines().collect();
    assert_eq!(lines.len(), 1, "{text}");
    let verdict: serde_json::Value = serde_json::from_str(lines[0]).expect("valid JSON");
    assert_eq!(verdict["test"], "report::fixture_json_leak");
    let survivors = verdict["survivors"].as_array().unwrap();
    assert_eq!(survivors.len(), 3, "{verdict:#}");
    let mut names: Vec<_> = survivors
        .iter()
        .map(|s| s["name"].as_str().unwrap().to_string())
        .collect();
    names.sort();
    assert_eq!(names, ["json-0", "json-1", "json-2"]);
    for survivor in survivors {
        assert_eq!(survivor["kind"], "thread");
        assert!(survivor["id"].as_u64().unwrap() > 0);
        assert_eq!(
            survivor["stuck"]["function"], "it::report::reply_worker_send",
            "{survivor:#}"
        );
        assert!(
            survivor["origin"]
                .as_str()
                .unwrap()
                .starts_with("tests/it/report.rs:"),
            "{survivor:#}"
        );
        assert!(
            survivor["hint"]["cause"]
                .as_str()
                .unwrap()
                .starts_with("blocked sending"),
            "{survivor:#}"
        );
    }
    let mut pinned = verdict.clone();
    let survivors = pinned["survivors"].as_array_mut().unwrap();
    survivors.sort_by_key(|s| s["name"].as_str().unwrap().to_string());
    for survivor in survivors {
        survivor["id"] = "[tid]".into();
        // The kernel function a blocked thread sleeps in differs between kernel versions.
        survivor["wchan"] = "[wchan]".into();
    }
    let pretty = serde_json::to_string_pretty(&pinned).unwrap();
    common::report_settings().bind(|| insta::assert_snapshot!(pretty));
}

/// A thread that blocks every signal is reported without a stack, and the check is prompt.
#[test]
#[cfg(target_os = "linux")] // stacks are captured with a signal on Linux only
fn thread_blocking_all_signals_is_reported_without_stack() {
    let (release, blocked) = mpsc::channel::<()>();
    let (ready, started) = mpsc::channel::<()>();
    let worker = thread::spawn(move || {
        // SAFETY: blocks every signal on this thread only.
        unsafe {
            let mut all: libc::sigset_t = std::mem::zeroed();
            libc::sigfillset(&mut all);
            libc::pthread_sigmask(libc::SIG_BLOCK, &all, std::ptr::null_mut());
        }
        ready.send(()).unwrap();
        let _ = blocked.recv();
    });
    started.recv().unwrap();
    let started = std::time::Instant::now();
    let error = Options::new()
        .settle(Duration::from_millis(200))
        .find()
        .expect_err("leak");
    let elapsed = started.elapsed();
    let report = error.to_string();
    assert!(
        report.contains("stuck in   unknown: not interrupted: it blocks the capture signal"),
        "{report}"
    );
    assert!(elapsed < Duration::from_secs(5), "took {elapsed:?}");
    drop(release);
    worker.join().unwrap();
}

/// Full stacks show library frames that the default report folds.
#[test]
fn full_stacks_show_library_frames() {
    let (release, blocked) = mpsc::channel::<()>();
    let worker = thread::spawn(move || {
        let _ = blocked.recv();
    });
    let folded = Options::new()
        .settle(Duration::from_millis(100))
        .find()
        .unwrap_err()
        .to_string();
    let full = Options::new()
        .settle(Duration::from_millis(100))
        .full_stacks(true)
        .find()
        .unwrap_err()
        .to_string();
    assert!(folded.contains("library frames"), "{folded}");
    assert!(full.contains("std::sync::mpmc"), "{full}");
    drop(release);
    worker.join().unwrap();
}
