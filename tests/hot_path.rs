//! The hot path (`src/hot/`) is the optimised object that `build.rs` compiles, unless the build
//! asked for it to be compiled with the crate (`LEAKCHECK_BUILD_INLINE=1`, as `.ci/run` does once):
//! either way, threads are attributed to the test that started them.

use std::sync::mpsc;
use std::time::Duration;

use leakcheck::{leak_test, verify_none, Options};

/// The build linked the object, or compiled the files in when told to: a failed object build
/// (which only warns) would show here.
#[test]
#[cfg(all(target_os = "linux", target_env = "gnu", not(target_feature = "crt-static")))]
fn hot_path_is_the_expected_build() {
    // What makes `build.rs` compile the files in, as the test binary's environment (cargo's) shows
    // it: asked for, or link-time optimisation set through the environment.
    let inline = std::env::var_os("LEAKCHECK_BUILD_INLINE").is_some_and(|value| value != "0")
        || std::env::vars().any(|(name, value)| {
            name.starts_with("CARGO_PROFILE_") && name.ends_with("_LTO") && value != "false"
        });
    let expected = if inline { "module" } else { "object" };
    assert_eq!(leakcheck::__private::hot_path(), expected);
}

/// A thread this test starts and leaves blocked is found (by the object's registry and
/// interposer) and reported where it was created (the object's own frames folded), and is gone
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
    assert!(report.contains("created at tests/hot_path.rs"), "{report}");
    release.send(()).unwrap();
    handle.join().unwrap();
    verify_none();
}

/// The clean pass that the hot path runs in one call: a thread started and joined in the body.
#[leak_test]
fn joined_thread_passes() {
    std::thread::spawn(|| ()).join().unwrap();
}
