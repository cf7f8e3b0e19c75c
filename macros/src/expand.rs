//! Turns `(Args, ItemFn)` into the test function.
//!
//! The user's function keeps its attributes, visibility, signature and name; its body moves,
//! unchanged, into an inner function `__leakcheck_body` with the same signature, so `?`, `return`
//! and type errors behave exactly as in the function the user wrote. The outer body hands that
//! inner function to `run_sync` (in a closure) or `run_async` (as its future):
//!
//! ```text
//! #[attrs] #[::core::prelude::v1::test]      // unless a test attribute is already there
//! fn name(params) -> Ret {
//!     fn __leakcheck_body(params) -> Ret { body }        // `async fn` for an async test
//!     ::leakcheck::__private::run_sync("name", options, move || __leakcheck_body(args))
//!     // or ::leakcheck::__private::run_async("name", options, runtime, __leakcheck_body(args))
//! }
//! ```

use proc_macro2::{Ident, Literal, Span, TokenStream, TokenTree};
use quote::{quote, ToTokens};
use syn::ext::IdentExt;
use syn::parse::Parser;
use syn::{AttrStyle, Attribute, FnArg, Item, ItemFn, LitStr, Meta, Pat};

use crate::args::{Args, Errors, Flavor, RuntimeArgs};
use crate::source;

const WRONG_ORDER_TOKIO: &str = "`#[leak_test]` must be placed above `#[tokio::test]`: below it, \
     tokio's runtime is dropped before leakcheck can check its tasks";

const WRONG_ORDER_TEST: &str = "`#[leak_test]` must be placed above `#[test]`: below it, the \
     test is registered twice (`#[leak_test]` adds `#[test]` itself, so `#[test]` can be dropped)";

/// The whole attribute: parse, check, expand. On any error, the errors plus the item untouched.
pub(crate) fn leak_test(args: TokenStream, item: TokenStream) -> TokenStream {
    let parsed_args = syn::parse2::<Args>(args);
    let result = match (parsed_args, syn::parse2::<ItemFn>(item.clone())) {
        (Ok(args), Ok(item)) => {
            if source::builtin_test_above(Span::call_site()) {
                Err(syn::Error::new(Span::call_site(), WRONG_ORDER_TEST))
            } else {
                expand(args, item)
            }
        }
        (args, Ok(_)) => args.map(|_| TokenStream::new()),
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

    // Test attributes: at most one that registers the test; `#[tokio::test]` on an async fn is
    // taken over (its runtime becomes ours); parameter-providing macros allow parameters.
    let mut registering: Option<&Attribute> = None;
    let mut tokio_test = None;
    let mut provides_params = false;
    for (index, attr) in item.attrs.iter().enumerate() {
        match TestAttr::of(attr) {
            Some(TestAttr::LeakTest) => errors.push(syn::Error::new_spanned(
                attr,
                "`#[leak_test]` is applied more than once",
            )),
            Some(kind @ (TestAttr::Test | TestAttr::TokioTest)) => {
                if let Some(first) = registering {
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
    let mut has_test_attr = registering.is_some();
    if let Some(index) = tokio_test {
        let attr = item.attrs.remove(index);
        has_test_attr = false;
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

    Ok(generate(&args, item, has_test_attr, &forwarded))
}

/// Builds the output once every check has passed.
fn generate(args: &Args, item: ItemFn, has_test_attr: bool, forwarded: &[Ident]) -> TokenStream {
    let ItemFn { attrs, vis, sig, block } = item;
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

    // Inner attributes (`#![allow(..)]` in the body) become outer ones: the body is now nested.
    let attrs = attrs.into_iter().map(|mut attr| {
        attr.style = AttrStyle::Outer;
        attr
    });
    let test_attr = (!has_test_attr).then(|| quote!(#[::core::prelude::v1::test]));
    let options = options(args);
    let call = if is_async {
        let runtime = runtime(&args.runtime);
        quote! {
            ::leakcheck::__private::run_async(#name, #options, #runtime, #body_fn(#(#forwarded),*))
        }
    } else {
        quote! {
            ::leakcheck::__private::run_sync(#name, #options, move || #body_fn(#(#forwarded),*))
        }
    };
    quote! {
        #(#attrs)*
        #test_attr
        #vis #outer_sig {
            #inner_sig #block
            #call
        }
    }
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
        let method = Ident::new(ignore.kind.method(), ignore.pattern.span());
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
        && path.segments.iter().zip(segments).all(|(s, name)| s.ident == name)
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
