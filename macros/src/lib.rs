//! The `#[leak_test]` attribute of [leakcheck](https://docs.rs/leakcheck). Use it through
//! `leakcheck::leak_test`; this crate is an implementation detail.

mod args;
mod expand;
mod source;

use proc_macro::TokenStream;

/// Placeholder docs.
#[proc_macro_attribute]
pub fn leak_test(args: TokenStream, item: TokenStream) -> TokenStream {
    expand::leak_test(args.into(), item.into()).into()
}
