//! The path every test takes: the lineage registry and interposed thread creation attribute a
//! thread to the test that started it, and the attribute's usual clean pass (nothing owned at
//! entry) passes a test that joins what it started.

use std::sync::mpsc;
use std::time::Duration;

use leakcheck::{leak_test, verify_none, Options};

/// A thread this test starts and leaves blocked is found (by the registry and the
/// interposer) and reported where it was created (leakcheck's own frames folded), and is gone
/// once released.
#[test]
fn a_blocked_thread_is_found_then_released() {
    let (release, wait) = mpsc::channel::<()>();
    let handle = std::thread::Builder::new()
        .name("hot-blocked".into())
        .spawn(move || {
            let _ = wait.recv();
        })
        .unwrap();
    let options = Options::new().settle(Duration::from_millis(50));
    let error = options.find().expect_err("the blocked thread is alive");
    let report = error.to_string();
    assert!(report.contains("thread \"hot-blocked\""), "{report}");
    assert!(report.contains("created at tests/it/usual_pass.rs"), "{report}");
    release.send(()).unwrap();
    handle.join().unwrap();
    verify_none();
}

/// The attribute's usual clean pass: a thread started and joined in the body.
#[leak_test]
fn joined_thread_passes() {
    std::thread::spawn(|| ()).join().unwrap();
}
