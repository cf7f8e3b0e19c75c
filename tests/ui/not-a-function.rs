/// `#[leak_test]` on a struct is rejected, pointing at the struct.
use leakcheck::leak_test;

#[leak_test]
struct NotATest;

fn main() {}
