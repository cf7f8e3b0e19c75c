//! Method chains in the user's source: the `.name(..)` of a task builder whose `.spawn(..)` is at
//! a known position, and whether a `.recv()` is called on a `MutexGuard`.
//!
//! Design: a chain is walked backwards from one method call over balanced brackets
//! (`Builder::new()\n.name("ticker")\n.spawn(f)`), so line breaks and nested calls in the
//! arguments do not matter; anything it does not recognise ends the walk, and the reader then
//! says nothing.

use super::tokens::{self, Kind, Token};

/// How a task was named at its spawn site.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(not(all(tokio_unstable, feature = "tokio")), allow(dead_code))]
pub(crate) enum BuilderName {
    /// `.name("ticker")`: the name itself.
    Literal(String),
    /// `.name(&format!("conn-{i}"))`: the expression's text (`format!("conn-{i}")`), whose value
    /// the source does not tell.
    Expression(String),
}

/// One method call of a chain.
struct Call {
    /// Index of the method's name token.
    method: usize,
    /// Byte range of the arguments, between the parentheses.
    #[cfg_attr(not(all(tokio_unstable, feature = "tokio")), allow(dead_code))]
    args: (usize, usize),
    /// Token range of the arguments.
    arg_tokens: (usize, usize),
}

/// A method chain, walked back from one call.
struct Chain {
    /// The calls before the one walked from, last first.
    calls: Vec<Call>,
    /// The variable the chain starts from (`guard` in `guard.recv()`), if it is one.
    root: Option<usize>,
    /// Byte offset where the chain starts.
    start: usize,
}

/// The name given by the builder chain whose spawn call is at `line`:`column` of `source`
/// (`std::panic::Location` of a `#[track_caller]` spawn: its method name, or the start of the
/// call). `None` when no `.spawn*(` is there or its chain has no `.name(..)`.
#[cfg_attr(not(all(tokio_unstable, feature = "tokio")), allow(dead_code))]
pub(crate) fn builder_name(source: &str, line: u32, column: u32) -> Option<BuilderName> {
    let tokens = tokens::tokenize(source);
    let at = tokens
        .iter()
        .position(|token| (token.line, token.column) >= (line, column))?;
    if tokens[at].line != line {
        return None;
    }
    let spawn = spawn_call(source, &tokens, at)?;
    let chain = chain_before(source, &tokens, spawn);
    let name = chain
        .calls
        .iter()
        .find(|call| tokens[call.method].is_ident(source, "name"))?;
    let (first, last) = name.arg_tokens;
    if last == first + 1 && tokens[first].kind == Kind::Str {
        return tokens::string_value(tokens[first].text(source)).map(BuilderName::Literal);
    }
    let text = one_line(&source[name.args.0..name.args.1]);
    let text = text.strip_prefix('&').unwrap_or(&text).trim();
    (!text.is_empty()).then(|| BuilderName::Expression(text.to_owned()))
}

/// The method-name token of the `.spawn*(` call at `at`, or the first at the top level of the
/// statement that starts at `at`.
#[cfg_attr(not(all(tokio_unstable, feature = "tokio")), allow(dead_code))]
fn spawn_call(source: &str, tokens: &[Token], at: usize) -> Option<usize> {
    let is_spawn = |i: usize| {
        tokens[i].kind == Kind::Ident
            && tokens[i].text(source).starts_with("spawn")
            && i > 0
            && tokens[i - 1].is_punct(source, '.')
            && tokens.get(i + 1).is_some_and(|next| next.is_punct(source, '('))
    };
    if is_spawn(at) {
        return Some(at);
    }
    let mut depth = 0i32;
    for (i, token) in tokens.iter().enumerate().skip(at) {
        if depth == 0 && is_spawn(i) {
            return Some(i);
        }
        match token.text(source) {
            "(" | "[" | "{" if token.kind == Kind::Punct => depth += 1,
            ")" | "]" | "}" if token.kind == Kind::Punct => depth -= 1,
            // The end of this statement, list element, argument or match arm: a spawn after it
            // is another task's.
            ";" | "," | "=>" if depth == 0 => return None,
            "=" if depth == 0 && tokens.get(i + 1).is_some_and(|next| next.is_punct(source, '>')) => {
                return None
            }
            _ => {}
        }
        if depth < 0 {
            return None;
        }
    }
    None
}

/// The chain before the method call whose name is `tokens[method]` (preceded by `.`).
fn chain_before(source: &str, tokens: &[Token], method: usize) -> Chain {
    let mut chain = Chain {
        calls: Vec::new(),
        root: None,
        start: tokens[method].start,
    };
    let mut at = method;
    loop {
        if at < 2 || !tokens[at - 1].is_punct(source, '.') {
            return chain;
        }
        let mut end = at - 2;
        while end > 0 && tokens[end].is_punct(source, '?') {
            end -= 1;
        }
        let token = &tokens[end];
        if token.kind == Kind::Ident {
            chain.start = token.start;
            if end > 0 && tokens[end - 1].is_punct(source, '.') {
                // A field (`self.receiver`): the chain goes on.
                at = end;
                continue;
            }
            // A variable, not the end of a path (`a::b`).
            if !(end > 0 && tokens[end - 1].is_punct(source, ':')) {
                chain.root = Some(end);
            }
            return chain;
        }
        if !token.is_punct(source, ')') {
            return chain;
        }
        let Some(open) = matching_open(source, tokens, end) else {
            return chain;
        };
        if open == 0 || tokens[open - 1].kind != Kind::Ident {
            return chain;
        }
        chain.calls.push(Call {
            method: open - 1,
            args: (tokens[open].end, tokens[end].start),
            arg_tokens: (open + 1, end),
        });
        chain.start = tokens[open - 1].start;
        at = open - 1;
    }
}

/// The index of the bracket that opens the one closing at `close`.
fn matching_open(source: &str, tokens: &[Token], close: usize) -> Option<usize> {
    let mut depth = 0;
    for i in (0..=close).rev() {
        if tokens[i].kind != Kind::Punct {
            continue;
        }
        match tokens[i].text(source) {
            ")" | "]" | "}" => depth += 1,
            "(" | "[" | "{" => {
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

/// The lock a `.recv()` on `line` is called under: the guard expression (`receiver.lock().unwrap()`)
/// when `recv` is called on a `.lock()` result in the same chain, or on a variable bound to one
/// (`let guard = receiver.lock().unwrap();` ... `guard.recv()`).
pub(crate) fn recv_on_guard(source: &str, line: u32) -> Option<String> {
    let tokens = tokens::tokenize(source);
    let calls = tokens.iter().enumerate().filter(|(i, token)| {
        token.line == line
            && token.is_ident(source, "recv")
            && *i > 0
            && tokens[i - 1].is_punct(source, '.')
            && tokens.get(i + 1).is_some_and(|next| next.is_punct(source, '('))
    });
    for (recv, _) in calls {
        let chain = chain_before(source, &tokens, recv);
        if has_lock(source, &tokens, &chain) {
            return Some(one_line(&source[chain.start..tokens[recv - 1].start]));
        }
        if let (true, Some(root)) = (chain.calls.is_empty(), chain.root) {
            if let Some(guard) = bound_guard(source, &tokens, root) {
                return Some(guard);
            }
        }
    }
    None
}

/// Whether a chain calls `.lock()`.
fn has_lock(source: &str, tokens: &[Token], chain: &Chain) -> bool {
    chain
        .calls
        .iter()
        .any(|call| tokens[call.method].is_ident(source, "lock") && call.arg_tokens.0 == call.arg_tokens.1)
}

/// The initializer of the nearest visible `let <variable> = ...;` before `use_at`, if it ends a
/// chain that calls `.lock()`.
fn bound_guard(source: &str, tokens: &[Token], use_at: usize) -> Option<String> {
    let variable = tokens[use_at].text(source);
    let mut depth = 0i32;
    for i in (0..use_at).rev() {
        let token = &tokens[i];
        if token.kind == Kind::Punct {
            match token.text(source) {
                ")" | "]" | "}" => depth += 1,
                "(" | "[" | "{" => depth = (depth - 1).max(0),
                _ => {}
            }
            continue;
        }
        if depth > 0 {
            continue;
        }
        if token.is_ident(source, "fn") {
            return None;
        }
        if !token.is_ident(source, "let") {
            continue;
        }
        let mut name = i + 1;
        if tokens.get(name)?.is_ident(source, "mut") {
            name += 1;
        }
        if !tokens.get(name)?.is_ident(source, variable) {
            continue;
        }
        // The initializer: after `=` (past a type annotation), up to the `;` at its level.
        let equals = (name + 1..use_at).find(|&j| tokens[j].is_punct(source, '='))?;
        let end = statement_end(source, tokens, equals + 1)?;
        let last = (equals + 1..end).rev().find(|&j| {
            tokens[j].kind == Kind::Ident
                && j > 0
                && tokens[j - 1].is_punct(source, '.')
                && tokens.get(j + 1).is_some_and(|next| next.is_punct(source, '('))
        });
        let tail = last.map(|j| chain_before(source, tokens, j));
        let locked = last.is_some_and(|j| tokens[j].is_ident(source, "lock"))
            || tail.is_some_and(|chain| has_lock(source, tokens, &chain));
        return locked.then(|| one_line(&source[tokens[equals + 1].start..tokens[end - 1].end]));
    }
    None
}

/// The index of the `;` that ends the statement going on at `from`.
fn statement_end(source: &str, tokens: &[Token], from: usize) -> Option<usize> {
    let mut depth = 0i32;
    for (i, token) in tokens.iter().enumerate().skip(from) {
        if token.kind != Kind::Punct {
            continue;
        }
        match token.text(source) {
            "(" | "[" | "{" => depth += 1,
            ")" | "]" | "}" => depth -= 1,
            ";" if depth == 0 => return Some(i),
            _ => {}
        }
        if depth < 0 {
            return None;
        }
    }
    None
}

/// Source text on one line: each run of whitespace that spans lines becomes nothing before a `.`
/// or `)` and one space elsewhere.
fn one_line(text: &str) -> String {
    let mut out = String::new();
    for (i, line) in text.trim().lines().enumerate() {
        let line = line.trim();
        if i > 0 && !line.starts_with(['.', ')', '?']) && !out.ends_with(['(', '[']) {
            out.push(' ');
        }
        out.push_str(line);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The `.name(..)` of the chain whose spawn is at the position: a literal over several lines,
    /// an expression marked as such, nothing for an unnamed chain or a plain `tokio::spawn`.
    #[test]
    fn builder_names() {
        let source = "\
fn f() {
    tokio::task::Builder::new()
        .name(\"ticker\")
        .spawn(run())
        .unwrap();
    let h = Builder::new().name(&format!(\"conn-{i}\")).spawn(g(\")\"));
    tokio::spawn(x);
    Builder::new().spawn(y);
    let v = vec![tokio::spawn(a()), Builder::new().name(\"b\").spawn(b()).unwrap()];
    match k { 0 => tokio::spawn(c()), _ => Builder::new().name(\"d\").spawn(d()).unwrap() };
}";
        assert_eq!(
            builder_name(source, 4, 10),
            Some(BuilderName::Literal("ticker".into()))
        );
        // The start of the statement finds the spawn of its chain.
        assert_eq!(
            builder_name(source, 2, 5),
            Some(BuilderName::Literal("ticker".into()))
        );
        let column = source.lines().nth(5).unwrap().find("spawn").unwrap() as u32 + 1;
        assert_eq!(
            builder_name(source, 6, column),
            Some(BuilderName::Expression("format!(\"conn-{i}\")".into()))
        );
        assert_eq!(builder_name(source, 7, 5), None);
        assert_eq!(builder_name(source, 8, 20), None);
        assert_eq!(builder_name(source, 8, 5), None);
        // An unnamed spawn before another task's named builder, in a list or a match arm.
        let column = |line: usize| {
            source
                .lines()
                .nth(line - 1)
                .unwrap()
                .find("tokio::spawn")
                .unwrap() as u32
                + 1
        };
        assert_eq!(builder_name(source, 9, column(9)), None);
        assert_eq!(builder_name(source, 10, column(10)), None);
    }

    /// A `recv` on a lock's guard, in the chain or through a `let`; a plain `recv`, or one beside
    /// an unrelated guard, is not.
    #[test]
    fn recv_under_a_lock() {
        let source = "\
fn f() {
    let message = receiver.lock().unwrap().recv();
    let message = self.jobs.lock()?.recv();
    let guard = shared
        .lock()
        .expect(\"poisoned\");
    let job = guard.recv();
    let job = plain.recv();
    let state = state.lock().unwrap();
    let job = receiver.recv();
    { let inner = r.lock().unwrap(); }
    let job = inner.recv();
}";
        assert_eq!(
            recv_on_guard(source, 2).as_deref(),
            Some("receiver.lock().unwrap()")
        );
        assert_eq!(recv_on_guard(source, 3).as_deref(), Some("self.jobs.lock()?"));
        assert_eq!(
            recv_on_guard(source, 7).as_deref(),
            Some("shared.lock().expect(\"poisoned\")")
        );
        assert_eq!(recv_on_guard(source, 8), None);
        assert_eq!(recv_on_guard(source, 10), None);
        assert_eq!(recv_on_guard(source, 12), None);
    }
}
