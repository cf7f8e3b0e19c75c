//! Benchmarks that print a table: the cost of a clean check as the process holds more threads,
//! `#[leak_test]` overhead over a plain test, time to fail on one leak, and the time to build the
//! report for 1000 leaked threads; the clean-check cost with 0 and 100 child processes alive.
//!
//! Run with `cargo run --release --example bench`.

use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use leakcheck::Options;

/// Starts `count` threads parked until their sender is dropped, from the calling thread.
fn parked_threads(count: usize) -> Vec<mpsc::Sender<()>> {
    (0..count)
        .map(|_| {
            let (release, wait) = mpsc::channel::<()>();
            thread::Builder::new()
                .stack_size(64 * 1024)
                .spawn(move || {
                    let _ = wait.recv();
                })
                .expect("spawn");
            release
        })
        .collect()
}

/// Starts `count` parked threads from a helper thread, so they belong to no measuring thread.
fn other_threads(count: usize) -> Vec<mpsc::Sender<()>> {
    thread::spawn(move || parked_threads(count)).join().unwrap()
}

/// Mean cost of one clean `find()` on a fresh thread that started nothing.
fn clean_check_cost() -> Duration {
    thread::spawn(|| {
        let options = Options::new();
        options.find().unwrap(); // warm-up
        let rounds = 2000;
        let started = Instant::now();
        for _ in 0..rounds {
            options.find().unwrap();
        }
        started.elapsed() / rounds
    })
    .join()
    .unwrap()
}

/// Wall time of `tests` trivial tests, each on its own thread like libtest, with or without the
/// `#[leak_test]` wrapper.
fn suite_time(tests: usize, with_leakcheck: bool) -> Duration {
    let started = Instant::now();
    // One name per test, as libtest gives: a name run twice is a test registered twice.
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    for _ in 0..tests {
        let i = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let test = thread::Builder::new().name(format!("case_{i}::trivial_test"));
        let handle = if with_leakcheck {
            test.spawn(|| {
                // One function per name, as the attribute declares it.
                let test = Box::leak(Box::new(leakcheck::__private::Test::new("trivial_test")));
                leakcheck::__private::run_sync(test, Options::new(), leakcheck::__private::never_err, || {
                    std::hint::black_box(1)
                })
            })
        } else {
            test.spawn(|| std::hint::black_box(1))
        };
        handle.unwrap().join().unwrap();
    }
    started.elapsed()
}

/// Starts `count` `sleep 60` children from a helper thread (so they belong to no measuring
/// thread), measures a clean check, then kills and waits for them.
fn clean_check_cost_with_children(count: usize) -> Duration {
    let children = thread::spawn(move || {
        (0..count)
            .map(|_| {
                std::process::Command::new("sleep")
                    .arg("60")
                    .spawn()
                    .expect("spawn")
            })
            .collect::<Vec<_>>()
    })
    .join()
    .unwrap();
    let cost = clean_check_cost();
    for mut child in children {
        let _ = child.kill();
        let _ = child.wait();
    }
    cost
}

/// The child-process rows of the table.
fn child_rows() {
    for children in [0usize, 100] {
        let cost = clean_check_cost_with_children(children);
        println!(
            "| clean check, {children} other live child processes | {:.2} µs |",
            cost.as_secs_f64() * 1e6
        );
    }
    // A test that ran (and waited for) one child: its check looks the child up once.
    let cost = thread::spawn(|| {
        let options = Options::new();
        let rounds = 200;
        let mut total = Duration::ZERO;
        for _ in 0..rounds {
            let mut child = std::process::Command::new("true").spawn().expect("spawn");
            child.wait().expect("wait");
            let started = Instant::now();
            options.find().unwrap();
            total += started.elapsed();
        }
        total / rounds
    })
    .join()
    .unwrap();
    println!(
        "| clean check after the test ran and waited for one child | {:.2} µs |",
        cost.as_secs_f64() * 1e6
    );
}

fn main() {
    println!(
        "leakcheck benchmarks (release build, {} CPUs)\n",
        thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!("| measurement | value |");
    println!("|---|---|");
    for others in [0usize, 100, 1000, 10_000] {
        let threads = other_threads(others);
        let cost = clean_check_cost();
        println!(
            "| clean check, {others} other live threads | {:.2} µs |",
            cost.as_secs_f64() * 1e6
        );
        drop(threads);
        thread::sleep(Duration::from_millis(200));
    }
    child_rows();

    suite_time(200, false); // warm-up: thread stacks, allocator, lazy statics
    suite_time(200, true);
    let (mut plain, mut checked) = (Duration::ZERO, Duration::ZERO);
    for _ in 0..3 {
        plain += suite_time(1000, false) / 3;
        checked += suite_time(1000, true) / 3;
    }
    println!(
        "| 1000 trivial tests, plain | {:.1} ms |",
        plain.as_secs_f64() * 1e3
    );
    println!(
        "| 1000 trivial tests, `#[leak_test]` | {:.1} ms |",
        checked.as_secs_f64() * 1e3
    );
    println!("| ratio | {:.2}× |", checked.as_secs_f64() / plain.as_secs_f64());

    let fail_time = thread::spawn(|| {
        let (release, wait) = mpsc::channel::<()>();
        let leaked = thread::spawn(move || {
            let _ = wait.recv();
        });
        let started = Instant::now();
        let error = Options::new().find().expect_err("leak");
        let elapsed = started.elapsed();
        let _ = error.to_string();
        drop(release);
        leaked.join().unwrap();
        elapsed
    })
    .join()
    .unwrap();
    println!(
        "| time to fail on one leak (default settle 2 s) | {:.0} ms |",
        fail_time.as_secs_f64() * 1e3
    );

    let (report_time, lines) = thread::spawn(|| {
        let releases = parked_threads(1000);
        let started = Instant::now();
        let error = Options::new().settle(Duration::ZERO).find().expect_err("leak");
        let report = error.to_string();
        let elapsed = started.elapsed();
        drop(releases);
        (elapsed, report.lines().count())
    })
    .join()
    .unwrap();
    println!(
        "| full report for 1000 leaked threads (capture, resolve, group, render; {lines} lines) | {:.0} ms |",
        report_time.as_secs_f64() * 1e3
    );
}
