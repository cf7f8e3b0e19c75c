/// A value of the wrong type is rejected, naming the type expected.
use leakcheck::leak_test;

#[leak_test(flavor = "multi_thread", worker_threads = "4")]
async fn quoted_count() {}

fn main() {}
