/// An argument given twice is rejected on its second occurrence.
use leakcheck::leak_test;

#[leak_test(settle = "1s", settle = "2s")]
fn settled_twice() {}

fn main() {}
