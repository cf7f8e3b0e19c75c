/// Parameters without a macro such as `#[rstest]` to supply them are rejected.
use leakcheck::leak_test;

#[leak_test]
fn takes_params(_count: usize, _name: &str) {}

fn main() {}
