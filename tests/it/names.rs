//! Long thread names: the kernel keeps 15 bytes (`database-connec`), and a name rule written with
//! the full name still hides the thread.

use crate::common;

use std::sync::mpsc;
use std::thread::{self, JoinHandle};

use common::LEAK_SETTLE;
use leakcheck::Options;

/// A thread named `name`, blocked until the returned sender is dropped.
fn start_blocked(name: &str) -> (mpsc::Sender<()>, JoinHandle<()>) {
    let (release, wait) = mpsc::channel::<()>();
    let handle = thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            let _ = wait.recv();
        })
        .unwrap();
    (release, handle)
}

fn release((release, handle): (mpsc::Sender<()>, JoinHandle<()>)) {
    drop(release);
    handle.join().unwrap();
}

/// `ignore_thread` with the full long name, and with a glob over it, hides the thread.
#[test]
fn full_long_name_hides_thread() {
    for pattern in ["database-connection-pool", "database-connection-*", "*-pool"] {
        let blocked = start_blocked("database-connection-pool");
        let result = Options::new().settle(LEAK_SETTLE).ignore_thread(pattern).find();
        release(blocked);
        result.unwrap_or_else(|error| panic!("`{pattern}` must hide the thread:\n{error}"));
    }
}

/// A pattern for another long name with a different start still reports the thread.
#[test]
fn other_long_name_does_not_hide_thread() {
    let blocked = start_blocked("database-connection-pool");
    let result = Options::new()
        .settle(LEAK_SETTLE)
        .ignore_thread("cache-connection-pool")
        .find();
    release(blocked);
    let error = result.expect_err("a different name does not hide it");
    assert!(error.to_string().contains("\"database-connec\""), "{error}");
}

/// The attribute form, as in the issue: a pool thread named past 15 bytes is hidden.
#[leakcheck::leak_test(ignore_thread = "database-connection-pool", settle = "300ms")]
fn attribute_ignores_long_name() {
    common::leak_named_thread("database-connection-pool");
}
