/// `#[leak_test]` below `#[tokio::test]` is rejected: the runtime would be gone before the check.
use leakcheck::leak_test;

#[tokio::test]
#[leak_test]
async fn wrong_order() {}

fn main() {}
