//! Without the `tokio` feature, threads are still checked: a leak fails, a joined thread passes.

use leakcheck::leak_test;

/// A joined thread is no leak.
#[leak_test]
fn joined_thread_passes() {
    std::thread::spawn(|| ()).join().unwrap();
}

/// A thread blocked forever is reported.
#[test]
fn blocked_thread_is_caught() {
    let (release, wait) = std::sync::mpsc::channel::<()>();
    let worker = std::thread::spawn(move || {
        let _ = wait.recv();
    });
    let error = leakcheck::Options::new()
        .settle(std::time::Duration::from_millis(200))
        .find()
        .expect_err("the blocked thread must be caught");
    assert_eq!(error.threads(), 1, "{error}");
    drop(release);
    worker.join().unwrap();
}

/// An async `#[leak_test]` is a compile error that names the feature to enable: builds the
/// `async-without-tokio` crate's tests and reads rustc's message.
#[test]
fn async_test_needs_the_feature() {
    let crate_dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../async-without-tokio");
    let target = concat!(env!("CARGO_MANIFEST_DIR"), "/../../../target/async-without-tokio");
    let output = std::process::Command::new(env!("CARGO"))
        .args(["test", "--no-run", "--quiet"])
        .current_dir(crate_dir)
        .env("CARGO_TARGET_DIR", target)
        .env_remove("RUSTFLAGS")
        .output()
        .expect("run cargo");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !output.status.success(),
        "the async test built without the feature:\n{stderr}"
    );
    assert!(
        stderr.contains("an async `#[leak_test]` needs leakcheck's `tokio` feature"),
        "{stderr}"
    );
    assert!(
        stderr.contains("src/lib.rs"),
        "the error points at the test: {stderr}"
    );
}
