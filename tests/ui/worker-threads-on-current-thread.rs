/// `worker_threads` without `flavor = "multi_thread"` is rejected, as `#[tokio::test]` does.
use leakcheck::leak_test;

#[leak_test(worker_threads = 4)]
async fn default_flavor() {}

fn main() {}
