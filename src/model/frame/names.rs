//! Function names as symbolizers write them, reduced to the forms rules and reports use: the
//! match key (whichever symbol mangling the build used), without a hash suffix, without the
//! macro's inner segments or trailing closures.

/// A function's name in the one form every name rule matches (the hints, the idioms, the built-in
/// rules and the user's ignore rules), whichever symbol mangling the build used.
///
/// Legacy mangling, rustc's default, demangles to `std::sync::mpmc::zero::Channel<T>::send::{{closure}}`;
/// v0 (`-C symbol-mangling-version=v0`, and `-C instrument-coverage`, which `cargo llvm-cov` sets)
/// to `<std::sync::mpmc::zero::Channel<u32>>::send::{closure#0}`. Both become
/// `std::sync::mpmc::zero::Channel::send::{{closure}}`: generic arguments dropped (declared or
/// concrete, and a function's `::<..>`), an inherent impl's `<Type>::` unwrapped, closures and
/// shims written as legacy writes them (`{closure#0}` → `{{closure}}`, `{shim:vtable#0}` →
/// `{{vtable.shim}}`). A trait impl keeps its `<Type as Trait>::` form.
pub(crate) fn match_key(name: &str) -> String {
    let mut key = String::with_capacity(name.len());
    let mut rest = name;
    while let Some(c) = rest.chars().next() {
        let follows_path = key.ends_with("::")
            || key
                .chars()
                .next_back()
                .is_some_and(|last| last.is_alphanumeric() || last == '_' || last == '}');
        if c == '<' && follows_path {
            // Generic arguments, or a function's turbofish: dropped, with the turbofish's `::`.
            rest = &rest[angle_group_len(rest)..];
            if key.ends_with("::") {
                key.truncate(key.len() - 2);
            }
        } else if let Some(legacy) = rest.strip_prefix("{{") {
            let end = legacy.find("}}").map_or(legacy.len(), |end| end + 2);
            key.push_str("{{");
            key.push_str(&legacy[..end]);
            rest = &legacy[end..];
        } else if let Some((inner, after)) = rest.strip_prefix('{').and_then(|v0| v0.split_once('}')) {
            // `{closure#0}`, `{shim:vtable#0}`: the kind, without the disambiguator.
            let kind = inner.split('#').next().unwrap_or(inner);
            match kind.split_once(':') {
                Some((namespace, detail)) => {
                    // Legacy appends a shim to its function's name: `call_once{{vtable.shim}}`.
                    if namespace == "shim" && key.ends_with("::") {
                        key.truncate(key.len() - 2);
                    }
                    key.push_str(&format!("{{{{{detail}.{namespace}}}}}"));
                }
                None => key.push_str(&format!("{{{{{kind}}}}}")),
            }
            rest = after;
        } else {
            key.push(c);
            rest = &rest[c.len_utf8()..];
        }
    }
    unwrap_inherent(key)
}

/// `<app::Worker<u8>>::start` → `app::Worker<u8>::start`: v0 demangling brackets the type of an
/// inherent impl, where legacy writes the path plainly; a trait impl's `<T as Trait>::` stays.
pub(crate) fn unwrap_inherent(name: String) -> String {
    if !name.starts_with('<') {
        return name;
    }
    let end = angle_group_len(&name);
    let inner = &name[1..end.saturating_sub(1)];
    if inner.contains(" as ") || !name[end..].starts_with("::") {
        return name;
    }
    format!("{inner}{}", &name[end..])
}

/// The length of the `<...>` group `text` starts with, through its matching `>` (a `->` inside,
/// as in `dyn Fn() -> u32`, is no bracket); all of `text` if it never closes.
fn angle_group_len(text: &str) -> usize {
    let mut depth = 0usize;
    let mut previous = '\0';
    for (at, c) in text.char_indices() {
        match c {
            '<' => depth += 1,
            '>' if previous != '-' => {
                depth -= 1;
                if depth == 0 {
                    return at + 1;
                }
            }
            _ => {}
        }
        previous = c;
    }
    text.len()
}

/// Drops a `::h0123456789abcdef` suffix left by a symbol the demangler did not understand.
pub(crate) fn strip_hash(function: &str) -> &str {
    match function.rsplit_once("::h") {
        Some((path, hash)) if hash.len() == 16 && hash.bytes().all(|b| b.is_ascii_hexdigit()) => path,
        _ => function,
    }
}

/// Drops the macro's internal segments from a name (`my_test::__leakcheck_body::{{closure}}` →
/// `my_test::{{closure}}`): the user wrote `my_test`, not leakcheck's inner function.
pub(crate) fn clean_name(function: &str) -> String {
    function.replace("::__leakcheck_body", "")
}

/// A function's name without trailing `::{{closure}}` segments.
pub(crate) fn base_name(function: &str) -> &str {
    let mut name = function;
    while let Some(outer) = name.strip_suffix("::{{closure}}") {
        name = outer;
    }
    name
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Legacy and v0 demanglings of one function give one key; what is not a generic argument list
    /// (a trait impl's `<Type as Trait>`, `->` in a `dyn Fn`) is kept.
    #[test]
    fn match_keys_are_mangling_free() {
        let same = [
            (
                "std::sync::mpmc::zero::Channel<T>::send::{{closure}}",
                "<std::sync::mpmc::zero::Channel<u32>>::send::{closure#0}",
                "std::sync::mpmc::zero::Channel::send::{{closure}}",
            ),
            (
                "tokio::runtime::blocking::pool::Inner::run",
                "<tokio::runtime::blocking::pool::Inner>::run",
                "tokio::runtime::blocking::pool::Inner::run",
            ),
            (
                "<alloc::boxed::Box<F,A> as core::ops::function::FnOnce<Args>>::call_once",
                "<alloc::boxed::Box<dyn core::ops::function::FnOnce<(), Output = ()> + core::marker::Send> as core::ops::function::FnOnce<()>>::call_once",
                "<alloc::boxed::Box as core::ops::function::FnOnce>::call_once",
            ),
            (
                "std::sys::backtrace::__rust_begin_short_backtrace",
                "std::sys::backtrace::__rust_begin_short_backtrace::<app::main::{closure#0}, ()>",
                "std::sys::backtrace::__rust_begin_short_backtrace",
            ),
            (
                "<F as core::ops::function::FnOnce<()>>::call_once{{vtable.shim}}",
                "<F as core::ops::function::FnOnce<()>>::call_once::{shim:vtable#0}",
                "<F as core::ops::function::FnOnce>::call_once{{vtable.shim}}",
            ),
            (
                "core::ptr::drop_in_place<alloc::boxed::Box<dyn core::ops::function::Fn() -> u32>>",
                "core::ptr::drop_in_place::<alloc::boxed::Box<dyn core::ops::function::Fn() -> u32>>",
                "core::ptr::drop_in_place",
            ),
            ("app::worker::{{closure}}::{{closure}}", "app::worker::{closure#0}::{closure#1}", "app::worker::{{closure}}::{{closure}}"),
        ];
        for (legacy, v0, key) in same {
            assert_eq!(match_key(legacy), key, "{legacy}");
            assert_eq!(match_key(v0), key, "{v0}");
        }
        assert_eq!(match_key("app::main"), "app::main");
        assert_eq!(match_key("0x1234"), "0x1234");
        assert_eq!(match_key("libc.so.6+0x891f4"), "libc.so.6+0x891f4");
        assert_eq!(
            match_key("<&mut I as core::iter::traits::iterator::Iterator>::next"),
            "<&mut I as core::iter::traits::iterator::Iterator>::next"
        );
        // Unclosed brackets (a name cut short) end the key, never panic.
        assert_eq!(match_key("app::Pool<T"), "app::Pool");
        assert_eq!(match_key("<app::Pool"), "<app::Pool");
        assert_eq!(match_key("app::{closure"), "app::{closure");
    }

    /// Hash suffixes go, closures and generic arguments stay.
    #[test]
    fn strips_hashes_only() {
        assert_eq!(strip_hash("app::main::h0123456789abcdef"), "app::main");
        assert_eq!(
            strip_hash("app::main::{{closure}}::h0123456789abcdef"),
            "app::main::{{closure}}"
        );
        assert_eq!(strip_hash("app::hello"), "app::hello");
        assert_eq!(strip_hash("app::hash::hx"), "app::hash::hx");
    }
}
