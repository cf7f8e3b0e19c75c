//! Turns `(Args, ItemFn)` into the test function.
//!
//! The user's function keeps its attributes, visibility, signature and name; its body moves,
//! unchanged, into an inner function `__leakcheck_body` with the same signature, so `?`, `return`
//! and type errors behave exactly as in the function the user wrote. The outer body hands that
//! inner function to `run_sync` or, called, to `run_async` as its future:
//!
//! ```text
//! #[attrs] #[::core::prelude::v1::test]      // unless a test attribute is already there
//! fn name(params) -> Ret {
//!     fn __leakcheck_body(params) -> Ret { body }        // `async fn` for an async test
//!     // `test` is `{ static TEST: Test = Test::new("name"); &TEST }`: one per function
//!     ::leakcheck::__private::run_sync(test, options, is_err, __leakcheck_body)
//!     // with parameters: run_sync(test, options, is_err, move || __leakcheck_body(params))
//!     // async: ::leakcheck::__private::run_async(test, options, runtime, is_err, __leakcheck_body())
//!     // `#[should_panic]`: run_sync_should_panic / run_async_should_panic, without `is_err`
//! }
//! ```

use proc_macro2::{Ident, Literal, Span, TokenStream, TokenTree};
use quote::{quote, ToTokens};
use syn::ext::IdentExt;
use syn::parse::Parser;
use syn::{AttrStyle, Attribute, FnArg, Item, ItemFn, LitStr, Meta, Pat, ReturnType};

use crate::args::{Args, Errors, Flavor, RuntimeArgs};
use crate::{compose, source};

const WRONG_ORDER_TOKIO: &str = "`#[leak_test]` must be placed above `#[tokio::test]`: below it, \
     tokio's runtime is dropped before leakcheck can check its tasks";

const WRONG_ORDER_TEST: &str = "`#[leak_test]` must be placed above `#[test]`: below it, the \
     test is registered twice; move `#[leak_test]` up, or drop `#[test]` (`#[leak_test]` adds it)";

/// The whole attribute: parse, check, expand. On any error, the errors plus the item untouched.
pub(crate) fn leak_test(args: TokenStream, item: TokenStream) -> TokenStream {
    let result = match (syn::parse2::<Args>(args), syn::parse2::<ItemFn>(item.clone())) {
        // rustc's `#[test]` above us has already registered the function and left no trace on
        // it: only the source text shows it.
        (Ok(_), Ok(_)) if source::builtin_test_above(Span::call_site()) => {
            Err(syn::Error::new(Span::call_site(), WRONG_ORDER_TEST))
        }
        (Ok(args), Ok(item)) => expand(args, item),
        (Err(error), Ok(_)) => Err(error),
        (args, Err(_)) => {
            let mut errors = Errors::default();
            errors.extend(args.map(drop));
            errors.push(not_a_function(&item));
            errors.finish().map(|()| TokenStream::new())
        }
    };
    result.unwrap_or_else(|error| {
        let mut tokens = error.into_compile_error();
        tokens.extend(item);
        tokens
    })
}

/// Expands a parsed `#[leak_test]` on a function.
pub(crate) fn expand(mut args: Args, mut item: ItemFn) -> syn::Result<TokenStream> {
    if is_tokio_test_output(&item) {
        return Err(syn::Error::new(Span::call_site(), WRONG_ORDER_TOKIO));
    }
    let is_async = item.sig.asyncness.is_some();
    let mut errors = Errors::default();
    errors.extend(compose::rewrite(&mut item.attrs, &mut args.runtime, is_async));

    // Test attributes: at most one that registers the test; `#[tokio::test]` on an async fn is
    // taken over (its runtime becomes ours); parameter-providing macros allow parameters.
    let mut registering: Option<&Attribute> = None;
    let mut tokio_test = None;
    let mut provides_params = false;
    let mut test_log_registers = false;
    for (index, attr) in item.attrs.iter().enumerate() {
        match TestAttr::of(attr) {
            Some(TestAttr::LeakTest) => errors.push(syn::Error::new_spanned(
                attr,
                "`#[leak_test]` is applied more than once",
            )),
            Some(kind @ (TestAttr::Test | TestAttr::TokioTest)) => {
                if let Some(first) = registering {
                    // `#[test_log::test]` with `#[tokio::test]`, in either order: tokio's runtime
                    // is taken over and test-log registers the test.
                    if is_async && compose::is_test_log_and_tokio(first, attr) {
                        if kind == TestAttr::TokioTest {
                            tokio_test = Some(index);
                        } else {
                            registering = Some(attr);
                        }
                        test_log_registers = true;
                        continue;
                    }
                    let msg = format!(
                        "`#[leak_test]` found two test attributes, `#[{}]` and `#[{}]`: each \
                         registers the test; keep one",
                        path_string(first),
                        path_string(attr)
                    );
                    errors.push(syn::Error::new_spanned(attr, msg));
                } else {
                    registering = Some(attr);
                    if kind == TestAttr::TokioTest && is_async {
                        tokio_test = Some(index);
                    }
                }
            }
            Some(TestAttr::ProvidesParams) => provides_params = true,
            None => {}
        }
    }
    // Whether something other than us registers the test: a kept test attribute, or a macro
    // like `#[rstest]` that registers each case.
    let mut registered = registering.is_some() || provides_params;
    if let Some(index) = tokio_test {
        let attr = item.attrs.remove(index);
        registered = provides_params || test_log_registers;
        errors.extend(tokio_runtime_args(&attr).and_then(|tokio| args.runtime.merge(tokio)));
    }

    let forwarded = match check_params(&item, provides_params) {
        Ok(idents) => idents,
        Err(error) => {
            errors.push(error);
            Vec::new()
        }
    };
    errors.extend(check_runtime(&args.runtime, is_async));
    errors.finish()?;

    Ok(generate(&args, item, registered, &forwarded))
}

/// Builds the output once every check has passed.
fn generate(args: &Args, item: ItemFn, registered: bool, forwarded: &[Ident]) -> TokenStream {
    let ItemFn {
        attrs,
        vis,
        sig,
        block,
    } = item;
    let is_async = sig.asyncness.is_some();
    let name = LitStr::new(&sig.ident.unraw().to_string(), sig.ident.span());
    let body_fn = Ident::new("__leakcheck_body", Span::call_site());

    // The inner function: the user's signature under our name, parameter attributes removed.
    let mut inner_sig = sig.clone();
    inner_sig.ident = body_fn.clone();
    for input in &mut inner_sig.inputs {
        if let FnArg::Typed(typed) = input {
            typed.attrs.clear();
        }
    }

    // The outer function: sync, and with `mut` dropped from parameters it only forwards.
    let mut outer_sig = sig;
    outer_sig.asyncness = None;
    for input in &mut outer_sig.inputs {
        if let FnArg::Typed(typed) = input {
            if let Pat::Ident(pat) = &mut *typed.pat {
                pat.mutability = None;
            }
        }
    }

    let should_panic = attrs.iter().any(|attr| attr.path().is_ident("should_panic"));
    // Inner attributes (`#![allow(..)]` in the body) become outer ones: the body is now nested.
    let attrs = attrs.into_iter().map(|mut attr| {
        attr.style = AttrStyle::Outer;
        attr
    });
    let test_attr = (!registered).then(|| quote!(#[::core::prelude::v1::test]));
    let call = call(
        args,
        &name,
        &body_fn,
        &outer_sig.output,
        should_panic,
        is_async,
        forwarded,
    );
    quote! {
        #(#attrs)*
        #test_attr
        #vis #outer_sig {
            #inner_sig #block
            #call
        }
    }
}

/// The call to the runtime. A `#[should_panic]` test goes to the `_should_panic` entry points (a
/// leak fails it by returning normally); any other gets `is_err`, so an `Err` that leaks is shown.
fn call(
    args: &Args,
    name: &LitStr,
    body_fn: &Ident,
    output: &ReturnType,
    should_panic: bool,
    is_async: bool,
    forwarded: &[Ident],
) -> TokenStream {
    let options = options(args);
    // One `static` per test function: how a second registration of it is told apart.
    let name = quote!({
        static TEST: ::leakcheck::__private::Test = ::leakcheck::__private::Test::new(#name);
        &TEST
    });
    let is_err = (!should_panic).then(|| {
        let is_err = is_err(output);
        quote!(#is_err,)
    });
    if is_async {
        let runtime = runtime(&args.runtime);
        let run = if should_panic {
            quote!(run_async_should_panic)
        } else {
            quote!(run_async)
        };
        return quote! {
            ::leakcheck::__private::#run(#name, #options, #runtime, #is_err #body_fn(#(#forwarded),*))
        };
    }
    let run = if should_panic {
        quote!(run_sync_should_panic)
    } else {
        quote!(run_sync)
    };
    if forwarded.is_empty() {
        quote!(::leakcheck::__private::#run(#name, #options, #is_err #body_fn))
    } else {
        quote! {
            ::leakcheck::__private::#run(#name, #options, #is_err move || #body_fn(#(#forwarded),*))
        }
    }
}

/// Tells whether the test's value is an `Err`, by autoref specialization on its written type;
/// `never_err` for `()` and for an `impl Trait` type, which cannot be named.
fn is_err(output: &ReturnType) -> TokenStream {
    let ty = match output {
        ReturnType::Type(_, ty) if !mentions_impl(ty.to_token_stream()) => ty,
        _ => return quote!(::leakcheck::__private::never_err),
    };
    quote! {
        |output: &#ty| {
            use ::leakcheck::__private::{IsErr as _, NotErr as _};
            (&::leakcheck::__private::Output(output)).__leakcheck_is_err()
        }
    }
}

/// Whether a type contains `impl Trait` anywhere.
fn mentions_impl(tokens: TokenStream) -> bool {
    let mut found = false;
    walk_idents(tokens, &mut |ident| found |= ident == "impl");
    found
}

/// `Options::new()` followed by one builder call per argument, each method name spanned on the
/// argument that asked for it, so a missing method points at the user's argument.
fn options(args: &Args) -> TokenStream {
    let mut options = quote!(::leakcheck::__private::Options::new());
    if let Some(settle) = &args.settle {
        let method = Ident::new("settle", settle.key.span());
        let nanos = Literal::u64_suffixed(settle.value);
        options = quote!(#options.#method(::core::time::Duration::from_nanos(#nanos)));
    }
    for ignore in &args.ignores {
        let method = Ident::new(ignore.kind.key(), ignore.pattern.span());
        let pattern = &ignore.pattern;
        options = quote!(#options.#method(#pattern));
    }
    if let Some(current) = args.ignore_current.as_ref().filter(|s| s.value) {
        let method = Ident::new("ignore_current", current.key.span());
        options = quote!(#options.#method());
    }
    options
}

/// The `Runtime` literal for `run_async`; tokio::test's defaults where nothing is set.
fn runtime(runtime: &RuntimeArgs) -> TokenStream {
    let flavor = match runtime.flavor.as_ref().map(|s| s.value) {
        Some(Flavor::MultiThread) => quote!(MultiThread),
        _ => quote!(CurrentThread),
    };
    let workers = match &runtime.worker_threads {
        Some(s) => {
            let n = Literal::usize_unsuffixed(s.value);
            quote!(::core::option::Option::Some(#n))
        }
        None => quote!(::core::option::Option::None),
    };
    let paused = runtime.start_paused.as_ref().is_some_and(|s| s.value);
    quote! {
        ::leakcheck::__private::Runtime {
            flavor: ::leakcheck::__private::Flavor::#flavor,
            worker_threads: #workers,
            start_paused: #paused,
        }
    }
}

/// The attributes `#[leak_test]` looks for on the function.
#[derive(Clone, Copy, PartialEq, Eq)]
enum TestAttr {
    /// A second `#[leak_test]`.
    LeakTest,
    /// `#[tokio::test]`.
    TokioTest,
    /// Any other attribute whose last segment is `test`: `#[test]`, `#[test_log::test]`, ...
    Test,
    /// `#[rstest]`, `#[test_case]`, `#[test_matrix]`, `#[case]`: they register the test and supply
    /// its parameters.
    ProvidesParams,
}

impl TestAttr {
    fn of(attr: &Attribute) -> Option<Self> {
        let path = attr.path();
        let last = path.segments.last()?.ident.to_string();
        match last.as_str() {
            "leak_test" => Some(Self::LeakTest),
            "test" if is_path(path, &["tokio", "test"]) => Some(Self::TokioTest),
            "test" => Some(Self::Test),
            "rstest" | "test_case" | "test_matrix" | "case" => Some(Self::ProvidesParams),
            _ => None,
        }
    }
}

fn is_path(path: &syn::Path, segments: &[&str]) -> bool {
    path.segments.len() == segments.len()
        && path
            .segments
            .iter()
            .zip(segments)
            .all(|(s, name)| s.ident == name)
}

fn path_string(attr: &Attribute) -> String {
    attr.path().to_token_stream().to_string().replace(' ', "")
}

/// The settings of a `#[tokio::test]` or `#[tokio::test(...)]` being taken over.
fn tokio_runtime_args(attr: &Attribute) -> syn::Result<RuntimeArgs> {
    match &attr.meta {
        Meta::Path(_) => Ok(RuntimeArgs::default()),
        Meta::List(list) => RuntimeArgs::parse_tokio.parse2(list.tokens.clone()),
        Meta::NameValue(_) => Err(syn::Error::new_spanned(
            attr,
            "expected `#[tokio::test]` or `#[tokio::test(...)]`",
        )),
    }
}

/// Parameters are allowed only when a macro like `#[rstest]` supplies them; each must be a plain
/// name, which the outer function forwards to the inner one. Returns the names.
fn check_params(item: &ItemFn, provides_params: bool) -> syn::Result<Vec<Ident>> {
    let inputs = &item.sig.inputs;
    if inputs.is_empty() {
        return Ok(Vec::new());
    }
    if !provides_params {
        return Err(syn::Error::new_spanned(
            inputs,
            "`#[leak_test]` functions take no parameters unless an inner test attribute such as \
             `#[rstest]` provides them",
        ));
    }
    let mut errors = Errors::default();
    let mut idents = Vec::new();
    for input in inputs {
        match input {
            FnArg::Typed(typed) => match &*typed.pat {
                Pat::Ident(pat) if pat.by_ref.is_none() && pat.subpat.is_none() => {
                    idents.push(pat.ident.clone());
                }
                pat => errors.push(syn::Error::new_spanned(
                    pat,
                    "`#[leak_test]` needs a plain parameter name like `x: u32` here; \
                     destructure it in the body",
                )),
            },
            FnArg::Receiver(receiver) => errors.push(syn::Error::new_spanned(
                receiver,
                "`#[leak_test]` does not apply to methods",
            )),
        }
    }
    errors.finish().map(|()| idents)
}

/// Runtime settings need an async fn, and must fit the flavor (as `#[tokio::test]` requires).
fn check_runtime(runtime: &RuntimeArgs, is_async: bool) -> syn::Result<()> {
    let mut errors = Errors::default();
    if !is_async {
        for key in runtime.keys() {
            let msg = format!("`{key}` is only valid on an `async fn`");
            errors.push(syn::Error::new(key.span(), msg));
        }
        return errors.finish();
    }
    let flavor = runtime.flavor.as_ref().map_or(Flavor::CurrentThread, |s| s.value);
    if let (Some(workers), Flavor::CurrentThread) = (&runtime.worker_threads, flavor) {
        errors.push(syn::Error::new(
            workers.key.span(),
            "`worker_threads` requires `flavor = \"multi_thread\"`; the default flavor is \
             `current_thread`",
        ));
    }
    if let (Some(paused), Flavor::MultiThread) = (&runtime.start_paused, flavor) {
        errors.push(syn::Error::new(
            paused.key.span(),
            "`start_paused` requires the `current_thread` flavor",
        ));
    }
    errors.finish()
}

/// Whether `item` is what `#[tokio::test]` makes of an async fn: a sync fn marked
/// `#[::core::prelude::v1::test]` whose body builds a runtime and calls `block_on`. That is what
/// `#[leak_test]` receives when it is written below `#[tokio::test]`.
fn is_tokio_test_output(item: &ItemFn) -> bool {
    if item.sig.asyncness.is_some() {
        return false;
    }
    let marked = item.attrs.iter().any(|attr| {
        let path = attr.path();
        path.leading_colon.is_some() && is_path(path, &["core", "prelude", "v1", "test"])
    });
    if !marked {
        return false;
    }
    let (mut block_on, mut runtime) = (false, false);
    walk_idents(item.block.to_token_stream(), &mut |ident| {
        block_on |= ident == "block_on";
        runtime |= ident == "Builder" || ident == "tokio";
    });
    block_on && runtime
}

/// Calls `f` on every identifier in `tokens`, nested groups included.
fn walk_idents(tokens: TokenStream, f: &mut impl FnMut(&Ident)) {
    for tree in tokens {
        match tree {
            TokenTree::Ident(ident) => f(&ident),
            TokenTree::Group(group) => walk_idents(group.stream(), f),
            TokenTree::Punct(_) | TokenTree::Literal(_) => {}
        }
    }
}

/// "`#[leak_test]` only applies to functions", pointed at the item's keyword and name when known.
fn not_a_function(item: &TokenStream) -> syn::Error {
    const MSG: &str = "`#[leak_test]` only applies to functions";
    let head = match syn::parse2::<Item>(item.clone()) {
        Ok(Item::Struct(i)) => {
            let (kw, name) = (i.struct_token, i.ident);
            quote!(#kw #name)
        }
        Ok(Item::Enum(i)) => {
            let (kw, name) = (i.enum_token, i.ident);
            quote!(#kw #name)
        }
        Ok(Item::Mod(i)) => {
            let (kw, name) = (i.mod_token, i.ident);
            quote!(#kw #name)
        }
        Ok(Item::Const(i)) => {
            let (kw, name) = (i.const_token, i.ident);
            quote!(#kw #name)
        }
        Ok(Item::Static(i)) => {
            let (kw, name) = (i.static_token, i.ident);
            quote!(#kw #name)
        }
        Ok(Item::Trait(i)) => {
            let (kw, name) = (i.trait_token, i.ident);
            quote!(#kw #name)
        }
        Ok(Item::Impl(i)) => {
            let (kw, ty) = (i.impl_token, i.self_ty);
            quote!(#kw #ty)
        }
        _ => item.clone(),
    };
    syn::Error::new_spanned(head, MSG)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The expansion of `#[leak_test(args)] item`, as a string to compare.
    fn expanded(args: &str, item: &str) -> String {
        let args: Args = syn::parse_str(args).expect("args parse");
        let item: ItemFn = syn::parse_str(item).expect("item parses");
        expand(args, item).expect("expands").to_string()
    }

    /// The error messages of `#[leak_test(args)] item`, in order.
    fn errors(args: &str, item: &str) -> Vec<String> {
        let item: ItemFn = syn::parse_str(item).expect("item parses");
        let result = syn::parse_str::<Args>(args).and_then(|args| expand(args, item));
        match result {
            Ok(tokens) => panic!("expected an error, got {tokens}"),
            Err(error) => error.into_iter().map(|e| e.to_string()).collect(),
        }
    }

    fn error(args: &str, item: &str) -> String {
        let mut all = errors(args, item);
        assert_eq!(all.len(), 1, "{all:?}");
        all.remove(0)
    }

    /// A sync test: `#[test]` added, body in an inner fn run through `run_sync`.
    #[test]
    fn sync_shape() {
        let expected = quote! {
            #[::core::prelude::v1::test]
            fn works() -> Result<(), String> {
                fn __leakcheck_body() -> Result<(), String> { Ok(()) }
                ::leakcheck::__private::run_sync(
                    {
                        static TEST: ::leakcheck::__private::Test = ::leakcheck::__private::Test::new("works");
                        &TEST
                    },
                    ::leakcheck::__private::Options::new(),
                    |output: &Result<(), String>| {
                        use ::leakcheck::__private::{IsErr as _, NotErr as _};
                        (&::leakcheck::__private::Output(output)).__leakcheck_is_err()
                    },
                    __leakcheck_body
                )
            }
        };
        assert_eq!(
            expanded("", "fn works() -> Result<(), String> { Ok(()) }"),
            expected.to_string()
        );
    }

    /// An async test without `#[tokio::test]`: sync outer fn, `run_async` on a current_thread
    /// runtime, the body in an inner `async fn`.
    #[test]
    fn async_shape() {
        let expected = quote! {
            #[::core::prelude::v1::test]
            pub fn works() {
                async fn __leakcheck_body() { run().await; }
                ::leakcheck::__private::run_async(
                    {
                        static TEST: ::leakcheck::__private::Test = ::leakcheck::__private::Test::new("works");
                        &TEST
                    },
                    ::leakcheck::__private::Options::new(),
                    ::leakcheck::__private::Runtime {
                        flavor: ::leakcheck::__private::Flavor::CurrentThread,
                        worker_threads: ::core::option::Option::None,
                        start_paused: false,
                    },
                    ::leakcheck::__private::never_err,
                    __leakcheck_body()
                )
            }
        };
        assert_eq!(
            expanded("", "pub async fn works() { run().await; }"),
            expected.to_string()
        );
    }

    /// `#[tokio::test(...)]` below is consumed; its settings and ours make one runtime.
    #[test]
    fn takes_over_tokio_test() {
        let out = expanded(
            "settle = \"1s\"",
            "#[tokio::test(flavor = \"multi_thread\", worker_threads = 3)] async fn t() {}",
        );
        assert!(!out.contains("tokio"), "{out}");
        assert!(out.contains("# [:: core :: prelude :: v1 :: test]"), "{out}");
        assert!(out.contains("Flavor :: MultiThread"), "{out}");
        assert!(
            out.contains("worker_threads : :: core :: option :: Option :: Some (3)"),
            "{out}"
        );
        assert!(out.contains("from_nanos (1000000000u64)"), "{out}");

        let out = expanded("start_paused = true", "#[tokio::test] async fn t() {}");
        assert!(out.contains("Flavor :: CurrentThread"), "{out}");
        assert!(out.contains("start_paused : true"), "{out}");
    }

    /// Every argument becomes one builder call, in the order written.
    #[test]
    fn options_calls() {
        let out = expanded(
            "ignore_thread = [\"pool-*\", \"logger\"], settle = \"250ms\", ignore_creator = \"a::b\", \
             ignore_current",
            "fn t() {}",
        );
        let expected = quote! {
            ::leakcheck::__private::Options::new()
                .settle(::core::time::Duration::from_nanos(250000000u64))
                .ignore_thread("pool-*")
                .ignore_thread("logger")
                .ignore_creator("a::b")
                .ignore_current()
        };
        assert!(out.contains(&expected.to_string()), "{out}");
        let out = expanded("ignore_current = false", "fn t() {}");
        assert!(!out.contains("ignore_current"), "{out}");
    }

    /// An existing test attribute is kept and no second one is added; attributes keep their order.
    #[test]
    fn keeps_existing_test_attribute() {
        let out = expanded("", "#[should_panic] #[test] #[ignore] fn t() {}");
        assert!(
            out.starts_with("# [should_panic] # [test] # [ignore] fn t ()"),
            "{out}"
        );
        assert!(!out.contains("prelude"), "{out}");
        let out = expanded("", "#[test_log::test] async fn t() {}");
        assert!(out.starts_with("# [test_log :: test] fn t ()"), "{out}");
    }

    /// A `#[should_panic]` test goes to the `_should_panic` entry points, sync and async.
    #[test]
    fn should_panic_entry_points() {
        let out = expanded("", "#[should_panic(expected = \"boom\")] fn t() {}");
        assert!(out.contains("run_sync_should_panic ({"), "{out}");
        assert!(out.contains("Test :: new (\"t\") ; & TEST } , :: leakcheck :: __private :: Options :: new () , __leakcheck_body)"), "{out}");
        let out = expanded("", "#[should_panic] #[tokio::test] async fn t() {}");
        assert!(out.contains("run_async_should_panic"), "{out}");
        assert!(!out.contains("never_err"), "{out}");
    }

    /// `is_err` is asked of the written return type; `()` and `impl Trait` are never errors.
    #[test]
    fn is_err_by_return_type() {
        assert!(expanded("", "fn t() {}").contains("never_err , __leakcheck_body"));
        let out = expanded("", "fn t() -> impl std::process::Termination { }");
        assert!(out.contains("never_err"), "{out}");
        let out = expanded("", "async fn t() -> std::io::Result<()> { Ok(()) }");
        assert!(out.contains("| output : & std :: io :: Result < () > |"), "{out}");
    }

    /// Inner attributes of the body become outer attributes of the function.
    #[test]
    fn lifts_inner_attributes() {
        let out = expanded("", "fn t() { #![allow(unused)] let x = 1; }");
        assert!(
            out.starts_with("# [allow (unused)] # [:: core :: prelude :: v1 :: test]"),
            "{out}"
        );
        assert!(out.contains("fn __leakcheck_body () { let x = 1 ; }"), "{out}");
    }

    /// With `#[rstest]`, parameters are forwarded by name; `mut` stays on the inner binding only,
    /// and parameter attributes stay on the outer function, where rstest reads them.
    #[test]
    fn forwards_parameters() {
        let out = expanded("", "#[rstest] #[case(1)] fn t(#[case] mut x: u32, y: &str) {}");
        assert!(out.contains("fn t (# [case] x : u32 , y : & str)"), "{out}");
        assert!(
            out.contains("fn __leakcheck_body (mut x : u32 , y : & str) { }"),
            "{out}"
        );
        assert!(out.contains("move || __leakcheck_body (x , y)"), "{out}");
        assert!(!out.contains("prelude"), "rstest registers the cases: {out}");
        let out = expanded("", "#[test_case(1)] #[tokio::test] async fn t(x: u32) {}");
        assert!(out.starts_with("# [test_case (1)] fn t (x : u32)"), "{out}");
    }

    /// Parameters need a macro that provides them, and plain names.
    #[test]
    fn parameter_errors() {
        assert_eq!(
            error("", "fn t(x: u32) {}"),
            "`#[leak_test]` functions take no parameters unless an inner test attribute such as \
             `#[rstest]` provides them"
        );
        assert!(error("", "#[test_case(1, 2)] fn t((a, b): (u32, u32)) {}")
            .contains("needs a plain parameter name"));
    }

    /// Unknown keys list every valid key; duplicates name the key; all errors are reported.
    #[test]
    fn argument_errors() {
        assert_eq!(
            error("setle = \"2s\"", "fn t() {}"),
            "unknown argument `setle`: did you mean `settle`? expected one of `settle`, `flavor`, `worker_threads`, \
             `start_paused`, `ignore_thread`, `ignore_top_function`, `ignore_any_function`, \
             `ignore_creator`, `ignore_spawn_site`, `ignore_process` or `ignore_current`"
        );
        assert_eq!(
            errors("settle = \"1s\", settle = \"2s\", nope", "fn t() {}").len(),
            2,
            "duplicate and unknown both reported"
        );
        assert_eq!(
            error("settle = \"1s\", settle = \"2s\"", "fn t() {}"),
            "`settle` set multiple times"
        );
        assert!(error("ignore_thread = \"a\", ignore_thread = \"b\"", "fn t() {}")
            .starts_with("`ignore_thread` set multiple times; list several patterns in one array"));
        assert!(error("settle = \"2 weeks ago\"", "fn t() {}").starts_with(
            "invalid `settle` value `2 weeks ago`: expected a duration like `500ms`, `2s`, `1.5s`, \
             `2 seconds` or `1m`"
        ));
        assert!(error("settle = 2", "fn t() {}").starts_with("expected a string literal for `settle`"));
        assert!(error("worker_threads = \"2\"", "async fn t() {}").starts_with("expected an integer"));
        assert_eq!(
            error("start_paused = 1", "async fn t() {}"),
            "expected `true` or `false` for `start_paused`"
        );
        assert_eq!(
            error("flavor = \"local\"", "async fn t() {}"),
            "invalid `flavor` value `local`: expected `\"current_thread\"` or `\"multi_thread\"`"
        );
        assert_eq!(
            error("flavor = \"multi_thread\", worker_threads = 0", "async fn t() {}"),
            "`worker_threads` must be at least 1"
        );
        assert_eq!(
            error("ignore_thread = [\"a\", 1]", "fn t() {}"),
            "expected a string literal"
        );
        assert_eq!(
            error("settle", "fn t() {}"),
            "`settle` needs a value: `settle = \"2s\"`"
        );
    }

    /// Runtime settings need an async fn and a flavor that fits.
    #[test]
    fn runtime_errors() {
        assert_eq!(
            errors("flavor = \"multi_thread\", start_paused = true", "fn t() {}"),
            [
                "`flavor` is only valid on an `async fn`",
                "`start_paused` is only valid on an `async fn`"
            ]
        );
        assert!(error("worker_threads = 2", "async fn t() {}")
            .starts_with("`worker_threads` requires `flavor = \"multi_thread\"`"));
        assert!(error(
            "flavor = \"multi_thread\"",
            "#[tokio::test(start_paused = true)] async fn t() {}"
        )
        .starts_with("`start_paused` requires the `current_thread` flavor"));
    }

    /// `#[tokio::test]` arguments leakcheck cannot honour, and settings given twice.
    #[test]
    fn tokio_test_errors() {
        assert_eq!(
            error("", "#[tokio::test(crate = \"my_tokio\")] async fn t() {}"),
            "`#[tokio::test]` argument `crate` is not supported under `#[leak_test]`, which \
             builds the runtime itself: it supports `flavor`, `worker_threads` and `start_paused`"
        );
        assert_eq!(
            error(
                "flavor = \"multi_thread\"",
                "#[tokio::test(flavor = \"multi_thread\")] async fn t() {}"
            ),
            "`flavor` set multiple times"
        );
    }

    /// Two attributes that each register the test.
    #[test]
    fn two_test_attributes() {
        assert_eq!(
            error("", "#[test] #[tokio::test] async fn t() {}"),
            "`#[leak_test]` found two test attributes, `#[test]` and `#[tokio::test]`: each \
             registers the test; keep one"
        );
        assert_eq!(errors("", "#[test] #[test] fn t() {}").len(), 1);
        assert_eq!(
            error("", "#[leak_test] fn t() {}"),
            "`#[leak_test]` is applied more than once"
        );
    }

    /// What `#[tokio::test]` generates, received when `#[leak_test]` is written below it.
    #[test]
    fn detects_tokio_test_above() {
        let generated = "#[::core::prelude::v1::test] fn t() {
            let body = async { work().await; };
            tokio::pin!(body);
            let body: ::core::pin::Pin<&mut dyn ::core::future::Future<Output = ()>> = body;
            #[allow(clippy::expect_used)]
            {
                use tokio::runtime::Builder;
                return Builder::new_current_thread().enable_all().build()
                    .expect(\"Failed building the Runtime\").block_on(body);
            }
        }";
        assert_eq!(error("", generated), WRONG_ORDER_TOKIO);
        // A sync test that runs its own runtime is not mistaken for it.
        let own = "#[test] fn t() { tokio::runtime::Runtime::new().unwrap().block_on(async {}); }";
        expanded("", own);
    }

    /// The entry point: errors come with the item untouched, and non-functions are rejected.
    #[test]
    fn entry_point_errors() {
        let item: TokenStream = syn::parse_str("fn t() {}").unwrap();
        let args: TokenStream = syn::parse_str("nope").unwrap();
        let out = leak_test(args, item.clone()).to_string();
        assert!(out.starts_with(":: core :: compile_error !"), "{out}");
        assert!(out.ends_with(&item.to_string()), "{out}");

        let item: TokenStream = syn::parse_str("struct S { a: u32 }").unwrap();
        let out = leak_test(TokenStream::new(), item).to_string();
        assert!(out.contains("only applies to functions"), "{out}");
    }

    /// `settle` strings: humantime's forms, exact to the nanosecond; the rest refused.
    #[test]
    fn settle_durations() {
        use crate::args::parse_duration;
        assert_eq!(parse_duration("2s"), Ok(2_000_000_000));
        assert_eq!(parse_duration("1.5s"), Ok(1_500_000_000));
        assert_eq!(parse_duration("500ms"), Ok(500_000_000));
        assert_eq!(parse_duration("250us"), Ok(250_000));
        assert_eq!(parse_duration("2 seconds"), Ok(2_000_000_000));
        assert_eq!(parse_duration("1m"), Ok(60_000_000_000));
        assert_eq!(parse_duration("1m 30s"), Ok(90_000_000_000));
        assert_eq!(parse_duration("0s"), Ok(0));
        for bad in ["", "2", "s", "2sec2", "-1s", "1e3ms", "soon"] {
            let error = parse_duration(bad).unwrap_err();
            assert!(error.contains("`2 seconds`"), "{bad}: {error}");
        }
        assert!(parse_duration("99999999999999999999s").is_err());
    }

    /// A misspelled key gets the nearest valid one; a far-off one does not.
    #[test]
    fn did_you_mean() {
        use crate::ignore_kinds::did_you_mean;
        let keys = &["settle", "ignore_thread", "ignore_current"];
        assert_eq!(did_you_mean("setle", keys), Some("settle"));
        assert_eq!(did_you_mean("ignore_threads", keys), Some("ignore_thread"));
        assert_eq!(did_you_mean("ignore_curent", keys), Some("ignore_current"));
        assert_eq!(did_you_mean("flavour", keys), None);
        assert_eq!(did_you_mean("x", keys), None);
    }
}
