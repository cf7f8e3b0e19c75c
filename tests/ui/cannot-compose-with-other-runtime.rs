/// An async test attribute that builds its own runtime cannot be composed with: the error names
/// it and says what to write instead.
use leakcheck::leak_test;

#[leak_test]
#[test_log::test(async_std::test)]
async fn other_runtime() {}

fn main() {}
