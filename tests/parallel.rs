//! Own binary: it re-runs itself at `--test-threads=16` and `scripts/stress.sh` runs it under load.
//!
//! Parallel attribution: under `cargo test --test-threads=16`, every leaky test fails and names
//! only its own threads, and no clean test fails, however the tests interleave (nor one whose
//! threads linger in waits that a shared thread ends: the early verdict must wait for them).

#[path = "it/common/mod.rs"]
mod common;

use std::process::Command;
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use common::failure_section;
use leakcheck::leak_test;

/// Starts `count` named threads that work for `millis`, and joins them.
fn busy_clean(name: &str, count: usize, millis: u64) {
    let workers: Vec<_> = (0..count)
        .map(|i| {
            thread::Builder::new()
                .name(format!("{name}-{i}"))
                .spawn(move || thread::sleep(Duration::from_millis(millis)))
                .unwrap()
        })
        .collect();
    for worker in workers {
        worker.join().unwrap();
    }
}

/// Leaks one thread named `name`, blocked until the process exits.
fn leak(name: &str) {
    thread::Builder::new()
        .name(name.into())
        .spawn(|| loop {
            thread::park();
        })
        .unwrap();
    // Keep the test's thread busy a little, as a real test would.
    busy_clean(&format!("{name}-ok"), 2, 50);
}

macro_rules! clean_fixtures {
    ($($name:ident: $count:expr, $millis:expr;)*) => {$(
        /// Fixture: clean, with named threads that run for a while.
        #[leak_test]
        #[ignore = "fixture, run by parallel_attribution"]
        fn $name() {
            busy_clean(stringify!($name), $count, $millis);
        }
    )*};
}

macro_rules! leaky_fixtures {
    ($($name:ident: $thread:expr;)*) => {$(
        /// Fixture: leaks one named thread.
        #[leak_test(settle = "300ms")]
        #[ignore = "fixture, run by parallel_attribution"]
        fn $name() {
            leak($thread);
        }
    )*};
}

clean_fixtures! {
    fixture_clean_00: 2, 100; fixture_clean_01: 3, 200; fixture_clean_02: 1, 300; fixture_clean_03: 4, 150;
    fixture_clean_04: 2, 250; fixture_clean_05: 3, 100; fixture_clean_06: 1, 200; fixture_clean_07: 2, 300;
    fixture_clean_08: 4, 120; fixture_clean_09: 2, 220; fixture_clean_10: 3, 180; fixture_clean_11: 1, 260;
    fixture_clean_12: 2, 100; fixture_clean_13: 3, 200; fixture_clean_14: 1, 300; fixture_clean_15: 4, 150;
    fixture_clean_16: 2, 250; fixture_clean_17: 3, 100; fixture_clean_18: 1, 200; fixture_clean_19: 2, 300;
    fixture_clean_20: 4, 120; fixture_clean_21: 2, 220; fixture_clean_22: 3, 180; fixture_clean_23: 1, 260;
    fixture_clean_24: 2, 100; fixture_clean_25: 3, 200; fixture_clean_26: 1, 300; fixture_clean_27: 4, 150;
    fixture_clean_28: 2, 250; fixture_clean_29: 3, 100; fixture_clean_30: 1, 200; fixture_clean_31: 2, 300;
    fixture_clean_32: 4, 120; fixture_clean_33: 2, 220; fixture_clean_34: 3, 180; fixture_clean_35: 1, 260;
}

leaky_fixtures! {
    fixture_leaky_a: "leak-a";
    fixture_leaky_b: "leak-b";
    fixture_leaky_c: "leak-c";
    fixture_leaky_d: "leak-d";
}

/// A process-wide service thread (a singleton, shared by every test): answers each request after
/// `millis` of its own work.
fn ask_service(millis: u64) -> mpsc::Receiver<()> {
    type Requests = mpsc::Sender<(u64, mpsc::Sender<()>)>;
    static SERVICE: std::sync::LazyLock<std::sync::Mutex<Requests>> = std::sync::LazyLock::new(|| {
        let (requests, inbox) = mpsc::channel::<(u64, mpsc::Sender<()>)>();
        thread::spawn(move || {
            for (millis, reply) in inbox {
                thread::sleep(Duration::from_millis(millis));
                let _ = reply.send(());
            }
        });
        std::sync::Mutex::new(requests)
    });
    let (reply, answer) = mpsc::channel();
    SERVICE.lock().unwrap().send((millis, reply)).unwrap();
    answer
}

/// Starts threads that outlive the test's body by about `millis` ms, in an untimed wait that
/// something else ends: a shared service's reply (`kind` 0), rayon's global pool (1), a
/// sibling's timed sleep (2).
fn linger(kind: u8, millis: u64) {
    match kind {
        0 => {
            let answer = ask_service(millis);
            thread::spawn(move || answer.recv().unwrap());
        }
        1 => drop(thread::spawn(move || {
            use rayon::prelude::*;
            let started = std::time::Instant::now();
            while started.elapsed() < Duration::from_millis(millis) {
                (0..10_000u64).into_par_iter().map(|x| x * x).sum::<u64>();
            }
        })),
        _ => {
            let (release, wait) = mpsc::channel::<()>();
            thread::spawn(move || wait.recv());
            thread::spawn(move || {
                thread::sleep(Duration::from_millis(millis));
                drop(release);
            });
        }
    }
}

macro_rules! lingering_fixtures {
    ($($name:ident: $kind:expr, $millis:expr;)*) => {$(
        /// Fixture: clean, but its threads linger in a wait that a shared thread or a sibling
        /// ends: the early verdict must not fail it.
        #[leak_test]
        #[ignore = "fixture, run by parallel_attribution"]
        fn $name() {
            linger($kind, $millis);
        }
    )*};
}

lingering_fixtures! {
    fixture_clean_linger_0: 0, 100; fixture_clean_linger_1: 0, 300; fixture_clean_linger_2: 1, 100;
    fixture_clean_linger_3: 1, 300; fixture_clean_linger_4: 2, 100; fixture_clean_linger_5: 2, 300;
}

/// The locks of the residual-risk pairs below.
static LOCKS: [std::sync::Mutex<()>; 8] = [const { std::sync::Mutex::new(()) }; 8];

macro_rules! residual_pairs {
    ($($hold:ident $wait:ident: $lock:expr;)*) => {$(
        /// Residual-risk fixture: holds a lock for `100 ms × (lock + 1)`, then passes.
        #[leak_test]
        #[ignore = "residual-risk measurement, see benches/README.md"]
        fn $hold() {
            let _held = LOCKS[$lock].lock().unwrap();
            thread::sleep(Duration::from_millis(100 * ($lock + 1)));
        }

        /// Residual-risk fixture: clean, but its thread lingers on the lock that the other test of
        /// the pair (outside its scope) holds; an early verdict before the lock is released is a
        /// wrong verdict.
        #[leak_test]
        #[ignore = "residual-risk measurement, see benches/README.md"]
        fn $wait() {
            thread::sleep(Duration::from_millis(5));
            thread::spawn(|| drop(LOCKS[$lock].lock().unwrap()));
        }
    )*};
}

residual_pairs! {
    residual_hold_0 residual_wait_0: 0; residual_hold_1 residual_wait_1: 1;
    residual_hold_2 residual_wait_2: 2; residual_hold_3 residual_wait_3: 3;
    residual_hold_4 residual_wait_4: 4; residual_hold_5 residual_wait_5: 5;
    residual_hold_6 residual_wait_6: 6; residual_hold_7 residual_wait_7: 7;
}

/// How often the whole fixture suite is run; `LEAKCHECK_PARALLEL_ROUNDS` raises it (the stress
/// script does).
fn rounds() -> usize {
    std::env::var("LEAKCHECK_PARALLEL_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3)
}

/// Every leaky fixture fails naming only its own thread; every clean one passes.
#[test]
fn parallel_attribution() {
    let exe = std::env::current_exe().unwrap();
    for round in 0..rounds() {
        let output = Command::new(&exe)
            .args(["--ignored", "--test-threads=16", "fixture_"])
            .env_remove("LEAKCHECK_JSON")
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        for line in stdout.lines().filter(|line| line.starts_with("test fixture_")) {
            let leaky = line.contains("fixture_leaky_");
            let passed = line.ends_with("... ok");
            assert_eq!(passed, !leaky, "round {round}: wrong verdict: {line}\n{stdout}");
        }
        let verdicts = stdout
            .lines()
            .filter(|line| line.starts_with("test fixture_"))
            .count();
        assert_eq!(verdicts, 46, "round {round}: every fixture ran\n{stdout}");
        for (test, own) in [
            ("fixture_leaky_a", "leak-a"),
            ("fixture_leaky_b", "leak-b"),
            ("fixture_leaky_c", "leak-c"),
            ("fixture_leaky_d", "leak-d"),
        ] {
            let section = failure_section(&stdout, test);
            assert!(
                section.contains(&format!("leakcheck: 1 thread leaked by `{test}`")),
                "round {round}:\n{section}"
            );
            assert!(
                section.contains(&format!("\"{own}\"")),
                "round {round}:\n{section}"
            );
            for other in ["leak-a", "leak-b", "leak-c", "leak-d", "fixture_clean"] {
                if other != own {
                    assert!(
                        !section.contains(other),
                        "round {round}: {test} blamed for {other}:\n{section}"
                    );
                }
            }
        }
    }
}
