/// A misspelt argument is rejected, listing every valid one.
use leakcheck::leak_test;

#[leak_test(setle = "2s")]
fn misspelt() {}

fn main() {}
