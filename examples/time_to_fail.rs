//! Time to fail: how long a check takes to report one leak, one leaking check per process (a
//! fresh process per run, as `cargo nextest` runs each test), with the early verdict (the default)
//! and without it (`LEAKCHECK_EARLY=off`: the whole settle deadline, as before the early verdict).
//! Prints a Markdown table of medians.
//!
//! Then times the suite of 14 leaking mini-redis-style async tests in `tests/early.rs` (whole
//! binary runs) without leakcheck, with it and the settle only, and with the early verdict.
//!
//! Run with `cargo run --example time_to_fail [runs]` (debug, what `cargo test` builds), or only
//! the suite with `cargo run --example time_to_fail -- --suite [runs]`.

use std::process::Command;
use std::time::{Duration, Instant};

const CASES: &[&str] = &[
    "thread parked in `recv` forever",
    "thread in a 30-s timed wait (`recv_timeout`)",
    "`pending()` task",
    "task on a 30-s interval",
    "server task in `accept`",
    "task on a 30-s interval (multi_thread runtime)",
    "passes: thread parked for good, hidden by `ignore_thread`",
    "passes: thread parked for good, hidden by `ignore_top_function`",
    "passes: thread in a 10-ms sleep loop, hidden by `ignore_top_function`",
];

/// The function the rule-hidden cases' threads are stuck in.
#[inline(never)]
fn lingering_here(sleep_loop: bool) {
    let (keep, inbox) = std::sync::mpsc::channel::<()>();
    std::mem::forget(keep);
    if sleep_loop {
        loop {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    let _ = inbox.recv();
}

/// Leaks case `case`, runs the check, prints its time in microseconds (and whether it failed).
fn leak_and_check(case: usize) {
    let options = match case {
        6 => leakcheck::Options::new().ignore_thread("lingering"),
        7 | 8 => leakcheck::Options::new().ignore_top_function("time_to_fail::lingering_here"),
        _ => leakcheck::Options::new(),
    };
    let task = |multi: bool, leak: fn()| {
        let runtime = match multi {
            true => tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build(),
            false => tokio::runtime::Builder::new_current_thread().enable_all().build(),
        };
        runtime.unwrap().block_on(async {
            leak();
            tokio::task::yield_now().await;
            let started = Instant::now();
            let failed = options.find_async().await.is_err();
            println!("{} {failed}", started.elapsed().as_micros());
            std::process::exit(0);
        })
    };
    match case {
        0 => {
            let (keep, inbox) = std::sync::mpsc::channel::<()>();
            std::thread::spawn(move || inbox.recv());
            std::mem::forget(keep);
        }
        1 => {
            let (keep, inbox) = std::sync::mpsc::channel::<()>();
            std::thread::spawn(move || inbox.recv_timeout(Duration::from_secs(30)));
            std::mem::forget(keep);
        }
        2 => task(false, || drop(tokio::spawn(std::future::pending::<()>()))),
        3 => task(false, interval),
        4 => task(false, || {
            drop(tokio::spawn(async {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                loop {
                    let _ = listener.accept().await;
                }
            }))
        }),
        5 => task(true, interval),
        _ => drop(
            std::thread::Builder::new()
                .name("lingering".into())
                .spawn(move || lingering_here(case == 8)),
        ),
    }
    std::thread::sleep(Duration::from_millis(20));
    let started = Instant::now();
    let failed = options.find().is_err();
    println!("{} {failed}", started.elapsed().as_micros());
}

fn interval() {
    drop(tokio::spawn(async {
        let mut every = tokio::time::interval(Duration::from_secs(30));
        loop {
            every.tick().await;
        }
    }));
}

/// Median time to fail of `runs` fresh processes, or why not.
fn measure(case: usize, early: bool, runs: usize) -> String {
    let mut times = Vec::new();
    for _ in 0..runs {
        let mut command = Command::new(std::env::current_exe().unwrap());
        command.arg("--case").arg(case.to_string());
        if !early {
            command.env("LEAKCHECK_EARLY", "off");
        }
        let output = command.output().unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        let Some((micros, failed)) = stdout.split_once(' ') else {
            return format!("no answer: {}", String::from_utf8_lossy(&output.stderr));
        };
        if (failed.trim() == "true") == CASES[case].starts_with("passes") {
            return "wrong verdict".into();
        }
        times.push(micros.parse::<u64>().unwrap());
    }
    times.sort_unstable();
    format!("{} ms", times[times.len() / 2] / 1000)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(case) = args.iter().position(|arg| arg == "--case") {
        leak_and_check(args[case + 1].parse().unwrap());
        return;
    }
    if args.iter().any(|arg| arg == "--suite") {
        return suite(args.last().and_then(|runs| runs.parse().ok()).unwrap_or(5));
    }
    let runs = args.get(1).and_then(|runs| runs.parse().ok()).unwrap_or(5);
    println!("| one leak, fresh process (debug), median of {runs} | settle only (`LEAKCHECK_EARLY=off`) | early verdict |");
    println!("|---|---|---|");
    for (case, name) in CASES.iter().enumerate() {
        println!(
            "| {name} | {} | {} |",
            measure(case, false, runs),
            measure(case, true, runs)
        );
    }
    suite(runs);
}

/// The 14 leaking mini-redis-style tests of `tests/early.rs`, whole binary runs (default test
/// threads), unchecked and checked: median wall times and their ratio.
fn suite(runs: usize) {
    let built = Command::new(env!("CARGO"))
        .args([
            "test",
            "--test",
            "early",
            "--no-run",
            "--message-format=json",
            "--quiet",
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&built.stdout);
    let Some(binary) = stdout
        .lines()
        .filter(|line| line.contains("\"name\":\"early\""))
        .find_map(|line| line.split("\"executable\":\"").nth(1)?.split('"').next())
    else {
        println!("could not build `tests/early.rs`");
        return;
    };
    let time = |filter: &str, early: bool| {
        let mut times: Vec<Duration> = (0..runs)
            .map(|_| {
                let mut command = Command::new(binary);
                command.args(["--ignored", filter]);
                if !early {
                    command.env("LEAKCHECK_EARLY", "off");
                }
                let started = Instant::now();
                command.output().unwrap();
                started.elapsed()
            })
            .collect();
        times.sort_unstable();
        times[runs / 2]
    };
    let plain = time("suite_plain_", true);
    let settle = time("suite_checked_", false);
    let early = time("suite_checked_", true);
    let ratio = |t: Duration| t.as_secs_f64() / plain.as_secs_f64();
    println!();
    println!("| 14 leaking mini-redis-style async tests, one binary run (debug), median of {runs} | wall time | ratio |");
    println!("|---|---|---|");
    println!(
        "| `#[tokio::test]`, no leakcheck | {} ms | 1.00x |",
        plain.as_millis()
    );
    println!(
        "| `#[leak_test]`, settle only (`LEAKCHECK_EARLY=off`) | {} ms | {:.2}x |",
        settle.as_millis(),
        ratio(settle)
    );
    println!(
        "| `#[leak_test]`, early verdict | {} ms | {:.2}x |",
        early.as_millis(),
        ratio(early)
    );
}
