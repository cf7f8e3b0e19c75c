//! A small Rust lexer for reading the user's source in a report: identifiers, literals, lifetimes
//! and single-character punctuation, with their positions; comments and whitespace are skipped.
//!
//! Design: enough to walk method chains (`a.lock().unwrap().recv()`) and to tell a string literal
//! from an expression; no parser, no dependency. Text it does not understand becomes punctuation,
//! so a reader at worst finds nothing.

/// What a token is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Kind {
    /// An identifier or keyword (`spawn`, `let`, `r#type`).
    Ident,
    /// A string literal of any form (`"a"`, `r#"a"#`, `b"a"`, `c"a"`).
    Str,
    /// Any other literal: a character, a number.
    Literal,
    /// `'a`.
    Lifetime,
    /// One character of punctuation (`::` is two tokens).
    Punct,
}

/// One token: its kind, its text's byte range in the source, and where it starts (1-based line
/// and column, the column counted in characters as `std::panic::Location` counts it).
#[derive(Clone, Debug)]
pub(super) struct Token {
    pub(super) kind: Kind,
    pub(super) start: usize,
    pub(super) end: usize,
    pub(super) line: u32,
    #[cfg_attr(not(all(tokio_unstable, feature = "tokio")), allow(dead_code))]
    pub(super) column: u32,
}

impl Token {
    /// The token's text in `source`.
    pub(super) fn text<'a>(&self, source: &'a str) -> &'a str {
        &source[self.start..self.end]
    }

    /// Whether it is the punctuation `c`.
    pub(super) fn is_punct(&self, source: &str, c: char) -> bool {
        self.kind == Kind::Punct && self.text(source).starts_with(c)
    }

    /// Whether it is the identifier `name`.
    pub(super) fn is_ident(&self, source: &str, name: &str) -> bool {
        self.kind == Kind::Ident && self.text(source) == name
    }
}

/// The tokens of `source`, in order.
pub(super) fn tokenize(source: &str) -> Vec<Token> {
    let chars: Vec<(usize, char)> = source.char_indices().collect();
    let mut tokens = Vec::new();
    let (mut line, mut column) = (1u32, 1u32);
    let mut i = 0;
    // Advances over `chars[from..to]`, keeping line and column.
    let advance = |from: usize, to: usize, line: &mut u32, column: &mut u32| {
        for &(_, c) in &chars[from..to] {
            if c == '\n' {
                *line += 1;
                *column = 1;
            } else {
                *column += 1;
            }
        }
    };
    while i < chars.len() {
        let c = chars[i].1;
        let next = chars.get(i + 1).map(|&(_, c)| c);
        let (kind, len) = if c.is_whitespace() {
            (None, 1)
        } else if c == '/' && next == Some('/') {
            (None, chars[i..].iter().take_while(|&&(_, c)| c != '\n').count())
        } else if c == '/' && next == Some('*') {
            (None, block_comment(&chars[i..]))
        } else if let Some(len) = string_literal(&chars[i..]) {
            (Some(Kind::Str), len)
        } else if c == '\'' {
            quote(&chars[i..])
        } else if c.is_alphabetic() || c == '_' {
            let raw = usize::from(c == 'r' && next == Some('#'));
            let len = raw * 2
                + chars[i + raw * 2..]
                    .iter()
                    .take_while(|&&(_, c)| c.is_alphanumeric() || c == '_')
                    .count();
            (Some(Kind::Ident), len.max(1))
        } else if c.is_ascii_digit() {
            // Digits, suffixes and a fraction (`1.5`, but not the range in `0..2`).
            let mut len = 0;
            while let Some(&(_, c)) = chars.get(i + len) {
                let fraction = c == '.' && chars.get(i + len + 1).is_some_and(|&(_, c)| c.is_ascii_digit());
                if !(c.is_alphanumeric() || c == '_' || fraction) {
                    break;
                }
                len += 1;
            }
            (Some(Kind::Literal), len)
        } else {
            (Some(Kind::Punct), 1)
        };
        let len = len.min(chars.len() - i);
        if let Some(kind) = kind {
            let end = chars.get(i + len).map_or(source.len(), |&(at, _)| at);
            tokens.push(Token {
                kind,
                start: chars[i].0,
                end,
                line,
                column,
            });
        }
        advance(i, i + len, &mut line, &mut column);
        i += len;
    }
    tokens
}

/// Length of a (nested) block comment starting at `chars[0]`.
fn block_comment(chars: &[(usize, char)]) -> usize {
    let mut depth = 0;
    let mut i = 0;
    while i < chars.len() {
        let pair = (chars[i].1, chars.get(i + 1).map(|&(_, c)| c));
        match pair {
            ('/', Some('*')) => {
                depth += 1;
                i += 2;
            }
            ('*', Some('/')) => {
                depth -= 1;
                i += 2;
                if depth == 0 {
                    return i;
                }
            }
            _ => i += 1,
        }
    }
    chars.len()
}

/// Length of the string literal starting at `chars[0]`, if one does: `"..."`, `b"..."`,
/// `c"..."`, `r"..."`, `r#"..."#`, `br#"..."#`.
fn string_literal(chars: &[(usize, char)]) -> Option<usize> {
    let at = |i: usize| chars.get(i).map(|&(_, c)| c);
    let mut i = 0;
    if matches!(at(0), Some('b' | 'c')) {
        i += 1;
    }
    let raw = at(i) == Some('r');
    if raw {
        i += 1;
    }
    let hashes = (i..).take_while(|&j| at(j) == Some('#')).count();
    i += hashes;
    if at(i) != Some('"') || (!raw && hashes > 0) {
        return None;
    }
    i += 1;
    while i < chars.len() {
        match at(i) {
            Some('\\') if !raw => i += 2,
            Some('"') if (1..=hashes).all(|k| at(i + k) == Some('#')) => return Some(i + 1 + hashes),
            _ => i += 1,
        }
    }
    Some(chars.len())
}

/// A character literal (`'a'`, `'\n'`, `'\u{1F600}'`) or a lifetime (`'a`), from its quote.
fn quote(chars: &[(usize, char)]) -> (Option<Kind>, usize) {
    let at = |i: usize| chars.get(i).map(|&(_, c)| c);
    if at(1) == Some('\\') {
        let len = (2..chars.len())
            .find(|&i| at(i) == Some('\''))
            .map_or(chars.len(), |i| i + 1);
        return (Some(Kind::Literal), len);
    }
    if at(2) == Some('\'') {
        return (Some(Kind::Literal), 3);
    }
    let len = 1 + chars[1..]
        .iter()
        .take_while(|&&(_, c)| c.is_alphanumeric() || c == '_')
        .count();
    (Some(Kind::Lifetime), len)
}

/// The value of a string literal's text (`"a\"b"` → `a"b`, `r#"x"#` → `x`); `None` for byte
/// and C strings, or an escape it does not know.
pub(super) fn string_value(text: &str) -> Option<String> {
    if let Some(raw) = text.strip_prefix('r') {
        let hashes = raw.len() - raw.trim_start_matches('#').len();
        let body = raw.get(hashes + 1..raw.len().checked_sub(hashes + 1)?)?;
        return Some(body.to_owned());
    }
    let body = text.strip_prefix('"')?.strip_suffix('"')?;
    let mut value = String::new();
    let mut chars = body.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            value.push(c);
            continue;
        }
        match chars.next()? {
            'n' => value.push('\n'),
            't' => value.push('\t'),
            'r' => value.push('\r'),
            '0' => value.push('\0'),
            c @ ('\\' | '"' | '\'') => value.push(c),
            '\n' => {
                // A line continuation: the newline and the next line's leading whitespace go.
                let rest: String = chars.clone().collect();
                let trimmed = rest.trim_start();
                chars = body[body.len() - trimmed.len()..].chars();
            }
            'x' => {
                let hex: String = chars.by_ref().take(2).collect();
                value.push(char::from(u8::from_str_radix(&hex, 16).ok()?));
            }
            'u' => {
                let code: String = chars.by_ref().skip(1).take_while(|&c| c != '}').collect();
                value.push(char::from_u32(u32::from_str_radix(&code, 16).ok()?)?);
            }
            _ => return None,
        }
    }
    Some(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(source: &str) -> Vec<(Kind, &str)> {
        tokenize(source)
            .iter()
            .map(|token| (token.kind, token.text(source)))
            .collect()
    }

    /// Literals, lifetimes, comments and raw identifiers are told apart; positions count lines
    /// and characters.
    #[test]
    fn tokens() {
        let source = "a.name(\"x(\\\"\") // c)\n  /* ( */ 'b' 'l r#\"q\"# é.f(1.5)";
        assert_eq!(
            kinds(source),
            [
                (Kind::Ident, "a"),
                (Kind::Punct, "."),
                (Kind::Ident, "name"),
                (Kind::Punct, "("),
                (Kind::Str, "\"x(\\\"\""),
                (Kind::Punct, ")"),
                (Kind::Literal, "'b'"),
                (Kind::Lifetime, "'l"),
                (Kind::Str, "r#\"q\"#"),
                (Kind::Ident, "é"),
                (Kind::Punct, "."),
                (Kind::Ident, "f"),
                (Kind::Punct, "("),
                (Kind::Literal, "1.5"),
                (Kind::Punct, ")"),
            ]
        );
        let tokens = tokenize(source);
        let f = &tokens[11];
        assert_eq!((f.line, f.column), (2, 27));
    }

    /// String values are unescaped; raw strings are taken as written.
    #[test]
    fn values() {
        assert_eq!(string_value("\"tick\\\"er\\n\"").as_deref(), Some("tick\"er\n"));
        assert_eq!(string_value("r#\"a\"b\"#").as_deref(), Some("a\"b"));
        assert_eq!(string_value("\"\\u{41}\\x42\"").as_deref(), Some("AB"));
        assert_eq!(string_value("b\"x\""), None);
    }
}
