// The benchmark's test binary: 1000 idle threads started before `main` (a process that already
// holds many threads), then the generated tests.

#[ctor::ctor(unsafe)]
fn idle_threads() {
    let count: usize = std::env::var("COST_IDLE_THREADS").ok().and_then(|v| v.parse().ok()).unwrap_or(1000);
    for _ in 0..count {
        std::thread::Builder::new()
            .stack_size(64 * 1024)
            .spawn(|| loop {
                std::thread::park();
            })
            .expect("spawn an idle thread");
    }
}

include!(concat!(env!("OUT_DIR"), "/tests.rs"));
