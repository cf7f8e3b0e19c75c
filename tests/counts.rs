//! Own binary: it asserts the process-wide `thread_count()`, which any other test would move.
//!
//! `thread_count()` and `dump()`. This binary holds one test, so the process-wide count moves
//! only with what that test does (libtest runs nothing else meanwhile).

use std::sync::mpsc;
use std::thread;

#[inline(never)]
fn blocked_in_counts(wait: mpsc::Receiver<()>) {
    let _ = wait.recv();
}

/// `thread_count()` moves by exactly the threads the test starts and joins, and `dump()` lists a
/// known blocked thread with the function it is stuck in and the thread that created it.
#[test]
fn counts_and_dump() {
    let before = leakcheck::thread_count().expect("this platform lists threads");
    let (releases, started): (Vec<_>, Vec<_>) = (0..3)
        .map(|i| {
            let (release, wait) = mpsc::channel::<()>();
            let (ready, is_ready) = mpsc::channel::<()>();
            let handle = thread::Builder::new()
                .name(format!("counted-{i}"))
                .spawn(move || {
                    ready.send(()).unwrap();
                    blocked_in_counts(wait)
                })
                .unwrap();
            is_ready.recv().unwrap();
            (release, handle)
        })
        .unzip();
    assert_eq!(leakcheck::thread_count(), Some(before + 3));

    // A thread that has said it is ready may still be on its way into `recv` (on a loaded machine,
    // for many milliseconds): dump again until it is blocked there, for up to 10 s.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let mut dump = leakcheck::dump();
    while std::time::Instant::now() < deadline
        && !dump
            .threads()
            .any(|t| t.name() == Some("counted-1") && t.stuck_in().is_some())
    {
        thread::sleep(std::time::Duration::from_millis(10));
        dump = leakcheck::dump();
    }
    let counted: Vec<_> = dump.threads().filter(|t| t.name() == Some("counted-1")).collect();
    assert_eq!(counted.len(), 1, "{dump}");
    let text = dump.to_string();
    assert!(
        text.contains("thread ") && text.contains("\"counted-1\""),
        "{text}"
    );
    // Stacks (signal capture on Linux with glibc, suspension on Windows x86_64) and creators
    // (lineage) are those platforms'; elsewhere the dump says why the stack is missing.
    if cfg!(any(
        all(target_os = "linux", target_env = "gnu"),
        all(windows, target_arch = "x86_64")
    )) {
        assert_eq!(counted[0].stuck_in(), Some("counts::blocked_in_counts"), "{dump}");
        assert_eq!(counted[0].creator(), Some("counts_and_dump"), "{dump}");
        assert!(counted[0].stack().any(|f| f.contains("Receiver")), "{dump}");
        assert!(
            text.contains("counts::blocked_in_counts at tests/counts.rs:"),
            "{text}"
        );
    } else {
        assert!(counted[0].missing_stack().is_some(), "{dump}");
    }

    drop(releases);
    for handle in started {
        handle.join().unwrap();
    }
    // A joined thread can still be listed for a moment while the kernel finishes its exit.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while leakcheck::thread_count() != Some(before) && std::time::Instant::now() < deadline {
        thread::sleep(std::time::Duration::from_millis(1));
    }
    assert_eq!(leakcheck::thread_count(), Some(before));
}
