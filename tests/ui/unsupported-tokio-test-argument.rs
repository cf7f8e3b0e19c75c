/// A `#[tokio::test]` argument leakcheck cannot honour when it builds the runtime is rejected.
use leakcheck::leak_test;

#[leak_test]
#[tokio::test(crate = "tokio")]
async fn custom_crate() {}

fn main() {}
