//! Time to build the first report in a fresh process (cold: nothing resolved yet) and a second
//! one in the same process (warm), for a handful of survivors, beyond the settle wait (settle 0).
//! Run by `benches/cost.py`, which starts this binary afresh for every cold sample.

use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Five threads blocked on a channel, released when the returned sender is dropped.
fn blocked_threads() -> Vec<mpsc::Sender<()>> {
    (0..5)
        .map(|i| {
            let (release, wait) = mpsc::channel::<()>();
            std::thread::Builder::new()
                .name(format!("survivor-{i}"))
                .spawn(move || {
                    let _ = wait.recv();
                })
                .expect("spawn");
            release
        })
        .collect()
}

/// Prints `cold_ms warm_ms`: the first and second report's cost.
#[test]
#[ignore]
fn first_report() {
    let options = leakcheck::Options::new().settle(Duration::ZERO);
    let mut costs = Vec::new();
    for _ in 0..2 {
        let release = blocked_threads();
        std::thread::sleep(Duration::from_millis(20));
        let started = Instant::now();
        let error = options.find().expect_err("five threads leaked");
        costs.push(started.elapsed());
        assert_eq!(error.threads(), 5, "{error}");
        drop(release);
        std::thread::sleep(Duration::from_millis(20));
    }
    println!("COST {:.1} {:.1}", costs[0].as_secs_f64() * 1e3, costs[1].as_secs_f64() * 1e3);
}
