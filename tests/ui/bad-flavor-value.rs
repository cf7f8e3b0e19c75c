/// A runtime flavor other than `current_thread` or `multi_thread` is rejected.
use leakcheck::leak_test;

#[leak_test(flavor = "single_thread")]
async fn unknown_flavor() {}

fn main() {}
