//! `#[test]` and `#[leak_test]` both passed through a `macro_rules!` as `$(#[$attr])*`: nothing is
//! written above the attribute's location, so this compiles; the second run fails at run time.
use leakcheck::leak_test;

macro_rules! tests {
    ($($(#[$attr:meta])* fn $name:ident() $body:block)*) => {
        $($(#[$attr])* fn $name() $body)*
    };
}

tests! {
    #[test]
    #[leak_test]
    fn registered_twice() {}
}
