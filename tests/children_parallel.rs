//! Own binary: it re-runs all its fixtures at `--test-threads=16`, a process of their own.
//!
//! Parallel attribution of child processes: under `cargo test --test-threads=16`, every leaky
//! test fails and names only its own child, and no clean test fails, while many clean tests run
//! short children at the same time (from their own thread and from worker threads).

// The leaky fixtures leak children on purpose.
#![allow(clippy::zombie_processes)]

#[path = "it/common/mod.rs"]
mod common;

use std::thread;

use common::{failure_section, sleeper, sleeper_text};
use leakcheck::leak_test;

/// Runs `count` short children (`sleep <secs>`; `ping -n 1` on Windows), half from worker
/// threads, and waits for all.
fn run_short_children(count: usize, secs: &str) {
    let workers: Vec<_> = (0..count)
        .map(|i| {
            let secs = secs.to_string();
            thread::spawn(move || {
                if i % 2 == 0 {
                    let mut child = sleeper(&secs).spawn().unwrap();
                    child.wait().unwrap();
                } else {
                    assert!(sleeper(&secs).status().unwrap().success());
                }
            })
        })
        .collect();
    let mut own = sleeper(secs).spawn().unwrap();
    for worker in workers {
        worker.join().unwrap();
    }
    own.wait().unwrap();
}

macro_rules! clean_fixtures {
    ($($name:ident: $count:expr, $secs:expr;)*) => {$(
        /// Fixture: clean, with short children that are waited for.
        #[leak_test]
        #[ignore = "fixture, run by parallel_child_attribution"]
        fn $name() {
            run_short_children($count, $secs);
        }
    )*};
}

macro_rules! leaky_fixtures {
    ($($name:ident: $arg:expr;)*) => {$(
        /// Fixture: leaks one `sleep <arg>` started from a worker thread, among clean children.
        #[leak_test(settle = "300ms")]
        #[ignore = "fixture, run by parallel_child_attribution"]
        fn $name() {
            thread::spawn(|| {
                sleeper($arg).spawn().unwrap();
            })
            .join()
            .unwrap();
            run_short_children(2, "0.05");
        }
    )*};
}

clean_fixtures! {
    fixture_clean_00: 2, "0.1"; fixture_clean_01: 3, "0.2"; fixture_clean_02: 1, "0.3"; fixture_clean_03: 4, "0.05";
    fixture_clean_04: 2, "0.25"; fixture_clean_05: 3, "0.1"; fixture_clean_06: 1, "0.2"; fixture_clean_07: 2, "0.3";
    fixture_clean_08: 4, "0.12"; fixture_clean_09: 2, "0.22"; fixture_clean_10: 3, "0.18"; fixture_clean_11: 1, "0.26";
    fixture_clean_12: 2, "0.1"; fixture_clean_13: 3, "0.2"; fixture_clean_14: 1, "0.3"; fixture_clean_15: 4, "0.05";
    fixture_clean_16: 2, "0.25"; fixture_clean_17: 3, "0.1"; fixture_clean_18: 1, "0.2"; fixture_clean_19: 2, "0.3";
}

leaky_fixtures! {
    fixture_leaky_a: "41";
    fixture_leaky_b: "42";
    fixture_leaky_c: "43";
    fixture_leaky_d: "44";
}

/// Every leaky fixture fails naming only its own child; every clean one passes.
#[test]
fn parallel_child_attribution() {
    let exe = std::env::current_exe().unwrap();
    for round in 0..2 {
        let output = std::process::Command::new(&exe)
            .args(["--ignored", "--test-threads=16", "fixture_"])
            .env_remove("LEAKCHECK_JSON")
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        let verdicts: Vec<&str> = stdout
            .lines()
            .filter(|line| line.starts_with("test fixture_"))
            .collect();
        assert_eq!(verdicts.len(), 24, "round {round}: every fixture ran\n{stdout}");
        for line in verdicts {
            let leaky = line.contains("fixture_leaky_");
            assert_eq!(
                line.ends_with("... ok"),
                !leaky,
                "round {round}: wrong verdict: {line}\n{stdout}"
            );
        }
        let own_args = [
            ("fixture_leaky_a", "41"),
            ("fixture_leaky_b", "42"),
            ("fixture_leaky_c", "43"),
            ("fixture_leaky_d", "44"),
        ];
        for (test, own) in own_args {
            let section = failure_section(&stdout, test);
            assert!(
                section.contains(&format!("leakcheck: 1 child process leaked by `{test}`")),
                "round {round}:\n{section}"
            );
            assert!(
                section.contains(&format!("`{}`", sleeper_text(own))),
                "round {round}:\n{section}"
            );
            for (_, other) in own_args.iter().filter(|(_, other)| *other != own) {
                assert!(
                    !section.contains(&format!("`{}`", sleeper_text(other))),
                    "round {round}: {test} blamed for `{}`:\n{section}",
                    sleeper_text(other)
                );
            }
            let short = if cfg!(windows) { "`ping -n 1 " } else { "`sleep 0." };
            assert!(!section.contains(short), "round {round}:\n{section}");
        }
    }
}
