/// A `settle` string that is not a duration is rejected, showing the valid forms.
use leakcheck::leak_test;

#[leak_test(settle = "2 weeks ago")]
fn spelled_out_unit() {}

fn main() {}
