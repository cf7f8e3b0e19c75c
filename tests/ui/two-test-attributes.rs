/// Two attributes that each register the test are rejected on the second.
use leakcheck::leak_test;

#[leak_test]
#[test]
#[tokio::test]
async fn registered_twice() {}

fn main() {}
