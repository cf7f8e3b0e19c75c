/// Runtime settings on a sync fn are rejected: there is no runtime to configure.
use leakcheck::leak_test;

#[leak_test(flavor = "multi_thread")]
fn not_async() {}

fn main() {}
