//! The arguments of `#[leak_test(...)]` and of a consumed `#[tokio::test(...)]`, parsed into typed
//! values. Everything that can be checked without looking at the function is checked here.

use proc_macro2::Ident;
use syn::parse::{Parse, ParseStream};
use syn::punctuated::Punctuated;
use syn::{Expr, Lit, LitStr, Meta, Token};

use crate::ignore_kinds::{did_you_mean, IgnoreKind};

/// Every key `#[leak_test(...)]` accepts, in the order the docs list them: the runtime and
/// settle keys, one per ignore kind, then `ignore_current`.
fn keys() -> Vec<&'static str> {
    let mut keys = vec!["settle", "flavor", "worker_threads", "start_paused"];
    keys.extend(IgnoreKind::ALL.map(IgnoreKind::key));
    keys.push("ignore_current");
    keys
}

/// The `#[tokio::test]` keys leakcheck understands when it takes over tokio's runtime.
const TOKIO_KEYS: &[&str] = &["flavor", "worker_threads", "start_paused"];

/// A value together with the key that set it, so later checks can point at the key.
pub(crate) struct Setting<T> {
    pub(crate) value: T,
    pub(crate) key: Ident,
}

/// The parsed `#[leak_test(...)]` arguments.
#[derive(Default)]
pub(crate) struct Args {
    /// `settle = "2s"`, in nanoseconds.
    pub(crate) settle: Option<Setting<u64>>,
    /// `flavor`, `worker_threads` and `start_paused` (async fns only).
    pub(crate) runtime: RuntimeArgs,
    /// `ignore_* = "..."` / `[...]`, one entry per string, in the order written.
    pub(crate) ignores: Vec<Ignore>,
    /// `ignore_current` or `ignore_current = true|false`.
    pub(crate) ignore_current: Option<Setting<bool>>,
}

/// The runtime settings shared by `#[leak_test(...)]` and `#[tokio::test(...)]`.
#[derive(Default)]
pub(crate) struct RuntimeArgs {
    pub(crate) flavor: Option<Setting<Flavor>>,
    pub(crate) worker_threads: Option<Setting<usize>>,
    pub(crate) start_paused: Option<Setting<bool>>,
}

/// A tokio runtime flavor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Flavor {
    CurrentThread,
    MultiThread,
}

/// One `.ignore_xxx("pattern")` call.
pub(crate) struct Ignore {
    pub(crate) kind: IgnoreKind,
    pub(crate) pattern: LitStr,
}

/// Collects errors so that one pass reports every problem at once.
#[derive(Default)]
pub(crate) struct Errors(Option<syn::Error>);

impl Errors {
    pub(crate) fn push(&mut self, error: syn::Error) {
        match &mut self.0 {
            Some(all) => all.combine(error),
            None => self.0 = Some(error),
        }
    }

    pub(crate) fn extend(&mut self, result: syn::Result<()>) {
        if let Err(error) = result {
            self.push(error);
        }
    }

    pub(crate) fn finish(self) -> syn::Result<()> {
        self.0.map_or(Ok(()), Err)
    }
}

impl Parse for Args {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        let metas = Punctuated::<Meta, Token![,]>::parse_terminated(input)?;
        let mut args = Args::default();
        let mut errors = Errors::default();
        for meta in metas {
            errors.extend(args.set(meta));
        }
        errors.finish().map(|()| args)
    }
}

impl Args {
    fn set(&mut self, meta: Meta) -> syn::Result<()> {
        let key = key_of(&meta, &keys(), unknown_key)?;
        let name = key.to_string();
        if name == "ignore_current" {
            let value = match &meta {
                Meta::Path(_) => true,
                _ => parse_bool(&key, value_of(&meta, &key, "ignore_current")?)?,
            };
            return set_once(&mut self.ignore_current, key, value);
        }
        let value = value_of(&meta, &key, &example(&name))?;
        if let Some(kind) = IgnoreKind::from_key(&name) {
            if self.ignores.iter().any(|ignore| ignore.kind == kind) {
                let msg = format!(
                    "`{name}` set multiple times; list several patterns in one array: \
                     `{name} = [\"a\", \"b\"]`"
                );
                return Err(syn::Error::new(key.span(), msg));
            }
            let patterns = parse_patterns(&key, value)?;
            self.ignores
                .extend(patterns.into_iter().map(|pattern| Ignore { kind, pattern }));
            return Ok(());
        }
        match name.as_str() {
            "settle" => {
                let nanos = parse_settle(value)?;
                set_once(&mut self.settle, key, nanos)
            }
            _ => self.runtime.set(key, value),
        }
    }
}

impl RuntimeArgs {
    /// Parses the arguments of a `#[tokio::test(...)]` that `#[leak_test]` takes over.
    pub(crate) fn parse_tokio(input: ParseStream<'_>) -> syn::Result<Self> {
        let metas = Punctuated::<Meta, Token![,]>::parse_terminated(input)?;
        let mut runtime = RuntimeArgs::default();
        let mut errors = Errors::default();
        for meta in metas {
            errors.extend(key_of(&meta, TOKIO_KEYS, unsupported_tokio_key).and_then(|key| {
                let value = value_of(&meta, &key, &example(&key.to_string()))?;
                runtime.set(key, value)
            }));
        }
        errors.finish().map(|()| runtime)
    }

    /// Sets one of `flavor`, `worker_threads`, `start_paused` (the caller has checked the key).
    fn set(&mut self, key: Ident, value: &Expr) -> syn::Result<()> {
        match key.to_string().as_str() {
            "flavor" => {
                let flavor = parse_flavor(value)?;
                set_once(&mut self.flavor, key, flavor)
            }
            "worker_threads" => {
                let n = parse_worker_threads(&key, value)?;
                set_once(&mut self.worker_threads, key, n)
            }
            _ => {
                let paused = parse_bool(&key, value)?;
                set_once(&mut self.start_paused, key, paused)
            }
        }
    }

    /// Adds the settings of a consumed `#[tokio::test(...)]`; a key given in both places is a
    /// duplicate, reported on the `#[tokio::test]` one (the second written).
    pub(crate) fn merge(&mut self, other: RuntimeArgs) -> syn::Result<()> {
        let mut errors = Errors::default();
        if let Some(s) = other.flavor {
            errors.extend(set_once(&mut self.flavor, s.key, s.value));
        }
        if let Some(s) = other.worker_threads {
            errors.extend(set_once(&mut self.worker_threads, s.key, s.value));
        }
        if let Some(s) = other.start_paused {
            errors.extend(set_once(&mut self.start_paused, s.key, s.value));
        }
        errors.finish()
    }

    /// The keys that were set, for "only valid on an `async fn`".
    pub(crate) fn keys(&self) -> impl Iterator<Item = &Ident> {
        let flavor = self.flavor.as_ref().map(|s| &s.key);
        let workers = self.worker_threads.as_ref().map(|s| &s.key);
        let paused = self.start_paused.as_ref().map(|s| &s.key);
        flavor.into_iter().chain(workers).chain(paused)
    }
}

/// The single-identifier key of `meta`, which must be one of `valid`.
fn key_of(meta: &Meta, valid: &[&str], unknown: fn(&Ident) -> syn::Error) -> syn::Result<Ident> {
    let path = meta.path();
    let Some(key) = path.get_ident() else {
        let msg = format!("expected an argument name: one of {}", list(valid, "or"));
        return Err(syn::Error::new_spanned(path, msg));
    };
    if !valid.contains(&key.to_string().as_str()) {
        return Err(unknown(key));
    }
    Ok(key.clone())
}

fn unknown_key(key: &Ident) -> syn::Error {
    let mut msg = format!("unknown argument `{key}`");
    let keys = keys();
    if let Some(near) = did_you_mean(&key.to_string(), &keys) {
        msg.push_str(&format!(": did you mean `{near}`?"));
    }
    msg.push_str(&format!(" expected one of {}", list(&keys, "or")));
    syn::Error::new(key.span(), msg)
}

fn unsupported_tokio_key(key: &Ident) -> syn::Error {
    let msg = format!(
        "`#[tokio::test]` argument `{key}` is not supported under `#[leak_test]`, which builds the \
         runtime itself: it supports {}",
        list(TOKIO_KEYS, "and")
    );
    syn::Error::new(key.span(), msg)
}

/// The value of `key = value`; `key` alone or `key(...)` is an error showing the right form.
fn value_of<'a>(meta: &'a Meta, key: &Ident, example: &str) -> syn::Result<&'a Expr> {
    match meta {
        Meta::NameValue(nv) => Ok(&nv.value),
        _ => Err(syn::Error::new_spanned(
            meta,
            format!("`{key}` needs a value: `{example}`"),
        )),
    }
}

/// An example of a well-formed `key = value`.
fn example(key: &str) -> String {
    if let Some(kind) = IgnoreKind::from_key(key) {
        return format!("{key} = [{:?}]", kind.example());
    }
    match key {
        "settle" => "settle = \"2s\"",
        "flavor" => "flavor = \"multi_thread\"",
        "worker_threads" => "worker_threads = 2",
        "start_paused" => "start_paused = true",
        _ => "ignore_current = true",
    }
    .to_string()
}

/// Stores `value` unless the setting is already there: then "`key` set multiple times" on `key`.
fn set_once<T>(slot: &mut Option<Setting<T>>, key: Ident, value: T) -> syn::Result<()> {
    if slot.is_some() {
        return Err(syn::Error::new(key.span(), format!("`{key}` set multiple times")));
    }
    *slot = Some(Setting { value, key });
    Ok(())
}

fn lit(value: &Expr) -> Option<&Lit> {
    match value {
        Expr::Lit(expr) => Some(&expr.lit),
        Expr::Group(group) => lit(&group.expr),
        _ => None,
    }
}

fn parse_bool(key: &Ident, value: &Expr) -> syn::Result<bool> {
    match lit(value) {
        Some(Lit::Bool(b)) => Ok(b.value),
        _ => Err(syn::Error::new_spanned(
            value,
            format!("expected `true` or `false` for `{key}`"),
        )),
    }
}

fn parse_worker_threads(key: &Ident, value: &Expr) -> syn::Result<usize> {
    let Some(Lit::Int(int)) = lit(value) else {
        let msg = format!("expected an integer for `{key}`, like `worker_threads = 2`");
        return Err(syn::Error::new_spanned(value, msg));
    };
    match int.base10_parse::<usize>() {
        Ok(0) => Err(syn::Error::new(int.span(), "`worker_threads` must be at least 1")),
        Ok(n) => Ok(n),
        Err(e) => Err(syn::Error::new(
            int.span(),
            format!("invalid `worker_threads` value: {e}"),
        )),
    }
}

fn parse_flavor(value: &Expr) -> syn::Result<Flavor> {
    let expected = "expected `\"current_thread\"` or `\"multi_thread\"`";
    let Some(Lit::Str(s)) = lit(value) else {
        let msg = format!("expected a string literal for `flavor`: {expected}");
        return Err(syn::Error::new_spanned(value, msg));
    };
    match s.value().as_str() {
        "current_thread" => Ok(Flavor::CurrentThread),
        "multi_thread" => Ok(Flavor::MultiThread),
        other => {
            let msg = format!("invalid `flavor` value `{other}`: {expected}");
            Err(syn::Error::new(s.span(), msg))
        }
    }
}

/// A string literal or an array of them.
fn parse_patterns(key: &Ident, value: &Expr) -> syn::Result<Vec<LitStr>> {
    match value {
        Expr::Array(array) => {
            let mut patterns = Vec::new();
            let mut errors = Errors::default();
            for elem in &array.elems {
                match lit(elem) {
                    Some(Lit::Str(s)) => patterns.push(s.clone()),
                    _ => errors.push(syn::Error::new_spanned(elem, "expected a string literal")),
                }
            }
            errors.finish().map(|()| patterns)
        }
        _ => match lit(value) {
            Some(Lit::Str(s)) => Ok(vec![s.clone()]),
            _ => {
                let msg = format!(
                    "expected a string literal or an array of string literals for `{key}`, like \
                     `{}`",
                    example(&key.to_string())
                );
                Err(syn::Error::new_spanned(value, msg))
            }
        },
    }
}

fn parse_settle(value: &Expr) -> syn::Result<u64> {
    let Some(Lit::Str(s)) = lit(value) else {
        let msg = "expected a string literal for `settle`, like `settle = \"2s\"`";
        return Err(syn::Error::new_spanned(value, msg));
    };
    let text = s.value();
    parse_duration(&text)
        .map_err(|why| syn::Error::new(s.span(), format!("invalid `settle` value `{text}`: {why}")))
}

/// What a valid duration looks like, for error messages (the same words as leakcheck's
/// `LEAKCHECK_SETTLE` error).
pub(crate) const DURATION_FORMS: &str = "expected a duration like `500ms`, `2s`, `1.5s`, `2 seconds` or `1m`";

/// Parses a duration in humantime's format (`500ms`, `1.5s`, `2 seconds`, `1m 30s`) into
/// nanoseconds: the same parser (the `humantime` crate) leakcheck uses for `LEAKCHECK_SETTLE`.
pub(crate) fn parse_duration(text: &str) -> Result<u64, String> {
    let duration =
        humantime::parse_duration(text.trim()).map_err(|error| format!("{DURATION_FORMS} ({error})"))?;
    u64::try_from(duration.as_nanos()).map_err(|_| "too large".to_string())
}

/// "`a`, `b` or `c`" (`conjunction` = "or").
fn list(names: &[&str], conjunction: &str) -> String {
    let quoted: Vec<String> = names.iter().map(|n| format!("`{n}`")).collect();
    match quoted.split_last() {
        Some((last, rest)) if !rest.is_empty() => {
            format!("{} {conjunction} {last}", rest.join(", "))
        }
        _ => quoted.concat(),
    }
}
