//! A `macro_rules!` that writes `#[test]` above the attributes it is given would register a
//! `#[leak_test]` test twice.
use leakcheck::leak_test;

macro_rules! test_with {
    ($(#[$attr:meta])* fn $name:ident() $body:block) => {
        #[test]
        $(#[$attr])*
        fn $name() $body
    };
}

test_with! {
    #[leak_test]
    fn registered_twice() {}
}
