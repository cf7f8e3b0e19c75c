//! Composition with test attributes that wrap another one: `#[test_log::test(tokio::test(...))]`.
//!
//! test-log's attribute, given an inner attribute, emits that attribute on the function
//! unchanged; with none, it emits `#[test]`. Under `#[leak_test]` the function it sees is sync
//! (leakcheck runs the body on its own runtime), so `#[tokio::test]` there would fail with tokio's
//! "the `async` keyword is missing". leakcheck therefore takes the inner `tokio::test(...)` over,
//! as it takes a plain `#[tokio::test]` over, and leaves `#[test_log::test]` bare: test-log still
//! initialises logging first thing in the test, and registers it with `#[test]`.
//!
//! An async test whose test attribute builds a runtime leakcheck cannot take over
//! (`#[async_std::test]`, `#[actix_rt::test]`, or one wrapped in test-log) is a compile error that
//! names the attribute and says what to write instead.

use quote::ToTokens;
use syn::{Attribute, Meta};

use crate::args::{Errors, RuntimeArgs};

/// Rewrites wrapping test attributes on an async fn: `#[x::test(tokio::test(args))]` becomes
/// `#[x::test]` and `args` merge into `runtime`. Attributes leakcheck cannot compose with are
/// errors. Plain `#[tokio::test]` is left to the caller.
pub(crate) fn rewrite(attrs: &mut [Attribute], runtime: &mut RuntimeArgs, is_async: bool) -> syn::Result<()> {
    let mut errors = Errors::default();
    if !is_async {
        return Ok(());
    }
    for attr in attrs.iter_mut() {
        let path = attr.path();
        let Some(last) = path.segments.last() else {
            continue;
        };
        if last.ident != "test" || is_tokio_test(path) {
            continue;
        }
        let wrapper = path_string(path);
        let inner = match &attr.meta {
            Meta::List(list) => Some(syn::parse2::<Meta>(list.tokens.clone())),
            _ => None,
        };
        match inner {
            // `#[test]`, `#[test_log::test]`: they add `#[test]` to our sync function; fine.
            None if is_plain_test(path) || wrapper == "test_log::test" => {}
            // `#[test_log::test(tokio::test(...))]`, also as `#[test(tokio::test)]` after
            // `use test_log::test`.
            Some(Ok(inner)) if is_tokio_test(inner.path()) => {
                let inner_args = match &inner {
                    Meta::Path(_) => Ok(RuntimeArgs::default()),
                    Meta::List(args) => {
                        syn::parse::Parser::parse2(RuntimeArgs::parse_tokio, args.tokens.clone())
                    }
                    Meta::NameValue(_) => Err(syn::Error::new_spanned(
                        &inner,
                        "expected `tokio::test` or `tokio::test(...)`",
                    )),
                };
                errors.extend(inner_args.and_then(|inner| runtime.merge(inner)));
                let bare = attr.path().clone();
                attr.meta = Meta::Path(bare);
            }
            Some(Ok(inner)) => errors.push(cannot_compose(attr, &path_string(inner.path()))),
            _ => errors.push(cannot_compose(attr, &wrapper)),
        }
    }
    errors.finish()
}

/// Whether `a` and `b` are a bare `#[test_log::test]` and a `#[tokio::test]`, in either order.
pub(crate) fn is_test_log_and_tokio(a: &Attribute, b: &Attribute) -> bool {
    let bare_test_log =
        |attr: &Attribute| matches!(attr.meta, Meta::Path(_)) && path_string(attr.path()) == "test_log::test";
    (bare_test_log(a) && is_tokio_test(b.path())) || (bare_test_log(b) && is_tokio_test(a.path()))
}

/// `test`, `::core::prelude::v1::test`, `std::prelude::rust_2021::test` and the like: rustc's.
fn is_plain_test(path: &syn::Path) -> bool {
    let first = path.segments.first().map(|s| s.ident.to_string());
    path.segments.len() == 1 || matches!(first.as_deref(), Some("core" | "std"))
}

fn is_tokio_test(path: &syn::Path) -> bool {
    path_string(path).trim_start_matches("::") == "tokio::test"
}

fn path_string(path: &syn::Path) -> String {
    path.to_token_stream().to_string().replace(' ', "")
}

fn cannot_compose(attr: &Attribute, name: &str) -> syn::Error {
    let msg = format!(
        "`#[leak_test]` cannot compose with `#[{name}]` on an `async fn`: leakcheck runs an async \
         test on its own tokio runtime (to check its tasks before shutdown), and `#[{name}]` would \
         build another; use `#[tokio::test(...)]` (or `#[test_log::test(tokio::test(...))]`) \
         instead, or set the runtime in `#[leak_test(flavor = \"multi_thread\", ...)]`"
    );
    syn::Error::new_spanned(attr, msg)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proc_macro2::TokenStream;
    use syn::ItemFn;

    fn rewritten(item: &str) -> (String, syn::Result<()>, RuntimeArgs) {
        let mut item: ItemFn = syn::parse_str(item).unwrap();
        let mut runtime = RuntimeArgs::default();
        let result = rewrite(&mut item.attrs, &mut runtime, item.sig.asyncness.is_some());
        (item.to_token_stream().to_string(), result, runtime)
    }

    /// test-log's inner `tokio::test(...)` is taken over; test-log stays, bare.
    #[test]
    fn takes_over_tokio_inside_test_log() {
        let (out, result, runtime) = rewritten(
            "#[test_log::test(tokio::test(flavor = \"multi_thread\", worker_threads = 2))] async fn t() {}",
        );
        assert!(result.is_ok());
        assert!(out.starts_with("# [test_log :: test] async fn t"), "{out}");
        assert_eq!(runtime.worker_threads.map(|s| s.value), Some(2));
        let (out, result, _) = rewritten("#[test_log::test(tokio::test)] async fn t() {}");
        assert!(result.is_ok());
        assert!(out.starts_with("# [test_log :: test] async fn t"), "{out}");
    }

    /// `#[test_log::test]` beside `#[tokio::test]`, either order: tokio taken over, test-log
    /// kept and registering the test.
    #[test]
    fn test_log_beside_tokio_test() {
        for item in [
            "#[test_log::test] #[tokio::test(flavor = \"multi_thread\")] async fn t() {}",
            "#[tokio::test(flavor = \"multi_thread\")] #[test_log::test] async fn t() {}",
        ] {
            let out = crate::expand::leak_test(TokenStream::new(), item.parse().unwrap()).to_string();
            assert!(out.starts_with("# [test_log :: test] fn t ()"), "{out}");
            assert!(!out.contains("tokio :: test"), "{out}");
            assert!(out.contains("Flavor :: MultiThread"), "{out}");
        }
    }

    /// A runtime-building attribute leakcheck does not know is an error naming it.
    #[test]
    fn refuses_foreign_runtimes() {
        let (_, result, _) = rewritten("#[async_std::test] async fn t() {}");
        let msg = result.unwrap_err().to_string();
        assert!(msg.contains("cannot compose with `#[async_std::test]`"), "{msg}");
        let (_, result, _) = rewritten("#[test_log::test(actix_rt::test)] async fn t() {}");
        let msg = result.unwrap_err().to_string();
        assert!(msg.contains("`#[actix_rt::test]`"), "{msg}");
        // Sync functions and plain attributes are left alone.
        assert!(rewritten("#[async_std::test] fn t() {}").1.is_ok());
        assert!(rewritten("#[test_log::test] async fn t() {}").1.is_ok());
        assert!(rewritten("#[tokio::test] async fn t() {}").1.is_ok());
    }
}
