//! What is written above `#[leak_test]` in the source file.
//!
//! Attribute macros expand from the top down, so in `#[test] #[leak_test] fn t()` rustc's built-in
//! `#[test]` runs first: it registers `t` and hands `#[leak_test]` the function with no trace of
//! itself. Adding our own `#[test]` would then register the test twice, silently. The only place
//! the first `#[test]` is still visible is the source text, so this module reads it: from the
//! position of the `#[leak_test]` attribute it walks back over the attributes written above it.
//!
//! The attribute is found by its own source text, so a renamed import (`use leakcheck::leak_test
//! as checked;`) is seen too, and so is a `#[test]` written above `#[$m]` in a `macro_rules!`
//! body. This needs span locations (Rust 1.88 or later, a real file on disk). Where they are
//! missing (older compilers, rust-analyzer), or the `#[test]` is not written above the attribute's
//! location (both passed through a `macro_rules!` as `$(#[$m])*`), nothing is found here; the
//! runtime then fails the second run of the test (`src/front/attribute/once.rs`).

use proc_macro2::Span;
use syn::parse::Parser;
use syn::{Attribute, Meta};

/// Whether a built-in `#[test]` is written directly above the attribute whose span is `call_site`.
pub(crate) fn builtin_test_above(call_site: Span) -> bool {
    let Some(file) = call_site.local_file() else {
        return false;
    };
    let Ok(text) = std::fs::read_to_string(file) else {
        return false;
    };
    let start = call_site.start();
    let Some(offset) = offset_of(&text, start.line, start.column) else {
        return false;
    };
    let here = &text[offset..];
    let ours = match call_site.source_text() {
        // Whatever the attribute is named (`use leakcheck::leak_test as checked;`), its own text
        // found at its location proves the location maps to this file as read. Inside a
        // `macro_rules!` body this is the transcriber's `#[$m]`, and what is above it there.
        Some(source) => source.starts_with('#') && here.starts_with(&source),
        None => is_leak_test_attribute(here),
    };
    if !ours {
        return false;
    }
    attributes_before(&text[..offset]).iter().any(is_builtin_test)
}

/// Whether `text` starts with the `#[leak_test]` attribute, proof that the span location maps to
/// this file as read (it would not for a doctest, whose lines are renumbered). Used where the
/// attribute's own source text is not available.
fn is_leak_test_attribute(text: &str) -> bool {
    let Some(rest) = text.strip_prefix('#') else {
        return false;
    };
    let Some(rest) = rest.trim_start().strip_prefix('[') else {
        return false;
    };
    let path_end = rest.find([']', '(']).unwrap_or(rest.len());
    rest[..path_end].trim_end().ends_with("leak_test")
}

/// The byte offset of 1-based `line`, 0-based `column` (in characters).
fn offset_of(text: &str, line: usize, column: usize) -> Option<usize> {
    let line_start = if line == 1 {
        0
    } else {
        text.match_indices('\n').nth(line.checked_sub(2)?)?.0 + 1
    };
    let rest = &text[line_start..];
    rest.char_indices().nth(column).map(|(i, _)| line_start + i)
}

/// The outer attributes written at the very end of `before`, nearest first. Stops at the first
/// thing that is not an attribute, a comment or whitespace, or that it cannot read with certainty.
pub(crate) fn attributes_before(before: &str) -> Vec<Attribute> {
    let mut attrs = Vec::new();
    let mut rest = strip_trivia(before);
    // In a `macro_rules!` body, the attribute may open a repetition: `#[test] $(#[$m])*`.
    if let Some(outside) = rest.strip_suffix("$(") {
        rest = strip_trivia(outside);
    }
    while rest.ends_with(']') {
        let Some(open) = matching_open(rest) else {
            break;
        };
        let Some(hash) = rest[..open].trim_end().strip_suffix('#') else {
            break;
        };
        let Ok(mut parsed) = Attribute::parse_outer.parse_str(&rest[hash.len()..]) else {
            break;
        };
        if parsed.len() != 1 {
            break;
        }
        attrs.push(parsed.remove(0));
        rest = strip_trivia(hash);
    }
    attrs
}

/// `#[test]`, `#[core::prelude::v1::test]` or `#[std::prelude::rust_2021::test]`: rustc's own.
fn is_builtin_test(attr: &Attribute) -> bool {
    let Meta::Path(path) = &attr.meta else {
        return false;
    };
    let segments: Vec<String> = path.segments.iter().map(|s| s.ident.to_string()).collect();
    match segments.as_slice() {
        [test] => path.leading_colon.is_none() && test == "test",
        [root, prelude, _, test] => {
            (root == "core" || root == "std") && prelude == "prelude" && test == "test"
        }
        _ => false,
    }
}

/// `text` without trailing whitespace, line comments and block comments.
fn strip_trivia(mut text: &str) -> &str {
    loop {
        let trimmed = text.trim_end();
        let stripped = if trimmed.ends_with("*/") {
            match trimmed.rfind("/*") {
                Some(open) => &trimmed[..open],
                None => trimmed,
            }
        } else {
            let line_start = trimmed.rfind('\n').map_or(0, |i| i + 1);
            match line_comment_start(&trimmed[line_start..]) {
                Some(i) => &trimmed[..line_start + i],
                None => trimmed,
            }
        };
        if stripped.len() == text.len() {
            return text;
        }
        text = stripped;
    }
}

/// Where a `//` comment starts in `line`, outside string literals.
fn line_comment_start(line: &str) -> Option<usize> {
    let bytes = line.as_bytes();
    let mut in_string = false;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' if in_string => i += 1,
            b'"' => in_string = !in_string,
            b'/' if !in_string && bytes.get(i + 1) == Some(&b'/') => return Some(i),
            _ => {}
        }
        i += 1;
    }
    None
}

/// The index of the `[` matching the `]` that ends `text`. Brackets inside string literals can
/// fool it; the caller re-parses what it finds, so a wrong match is rejected, not misread.
fn matching_open(text: &str) -> Option<usize> {
    let mut depth = 0usize;
    for (i, b) in text.bytes().enumerate().rev() {
        match b {
            b']' => depth += 1,
            b'[' => {
                depth -= 1;
                if depth == 0 {
                    return Some(i);
                }
            }
            _ => {}
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use quote::ToTokens;

    fn above(text: &str) -> Vec<String> {
        let attrs = attributes_before(text);
        attrs.iter().map(|a| a.to_token_stream().to_string()).collect()
    }

    /// Walks back over attributes, doc comments and comments, nearest first.
    #[test]
    fn reads_attributes_above() {
        let text = "fn x() {}\n\n/// doc\n#[test] // why\n/* note */ #[should_panic(expected = \"a\")]\n    ";
        assert_eq!(above(text), ["# [should_panic (expected = \"a\")]", "# [test]"]);
    }

    /// Stops at the previous item, at an inner attribute and at a commented-out attribute.
    #[test]
    fn stops_at_non_attributes() {
        assert!(above("fn x() {}\n").is_empty());
        assert!(above("#![cfg(test)]\n").is_empty());
        assert_eq!(above("// #[test]\n#[ignore]\n"), ["# [ignore]"]);
        assert!(above("let a = [1, 2];\n").is_empty());
    }

    /// In a `macro_rules!` body, the attributes above a repetition `$(#[$m])*` are read.
    #[test]
    fn macro_rules_repetition() {
        assert_eq!(above("    #[test]\n    $("), ["# [test]"]);
        assert!(above("fn $name() {}\n    $(").is_empty());
    }

    /// A multi-line attribute is read whole.
    #[test]
    fn multi_line_attribute() {
        assert_eq!(above("#[cfg_attr(\n    unix,\n    ignore\n)]\n").len(), 1);
    }

    /// Only rustc's own `#[test]` counts: other macros named `test` leave their mark on the item.
    #[test]
    fn builtin_test_only() {
        let attr = |s: &str| attributes_before(s).remove(0);
        assert!(is_builtin_test(&attr("#[test]")));
        assert!(is_builtin_test(&attr("#[::core::prelude::v1::test]")));
        assert!(is_builtin_test(&attr("#[std::prelude::rust_2021::test]")));
        assert!(!is_builtin_test(&attr("#[tokio::test]")));
        assert!(!is_builtin_test(&attr("#[test_log::test]")));
    }

    /// The attribute found at the span's location must be `#[leak_test]`, possibly with a path.
    #[test]
    fn checks_own_attribute() {
        assert!(is_leak_test_attribute("#[leak_test]\nfn t() {}"));
        assert!(is_leak_test_attribute("#[leakcheck::leak_test(settle = \"1s\")]"));
        assert!(!is_leak_test_attribute("#[test]\n#[leak_test]"));
        assert!(!is_leak_test_attribute("fn t() {}"));
    }

    /// Line and column convert to a byte offset, counting characters, not bytes.
    #[test]
    fn offsets() {
        let text = "ab\n// é\n  #[x]";
        assert_eq!(offset_of(text, 3, 2), Some(text.find('#').unwrap()));
        assert_eq!(offset_of(text, 2, 4), Some(text.find('é').unwrap() + 2));
        assert_eq!(offset_of(text, 9, 0), None);
    }
}
