//! `#[test]` above `#[leak_test]` imported under another name would register the test twice.
use leakcheck::leak_test as checked;

#[test]
#[checked]
fn registered_twice() {}
