//! The kinds of ignore rule: one table, read by both crates. The macro crate compiles it as
//! `ignore_kinds`; leakcheck compiles this same file as `model::ignore_kinds` (a symbolic link), since the
//! proc-macro crate can export nothing but macros.
//!
//! Both crates also suggest the nearest valid key for a misspelled one ([`did_you_mean`]).
//!
//! Each kind's key is its `#[leak_test]` argument, its `[package.metadata.leakcheck]` key, its
//! `Options` method and the name in a report's paste-ready rule, so every kind is accepted in
//! every place. What each kind matches is implemented in leakcheck's `rules.rs`.

/// One kind of ignore rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum IgnoreKind {
    /// Threads by name, exactly or as a glob.
    Thread,
    /// Threads by the first user frame of their current stack.
    TopFunction,
    /// Threads by any frame of their current stack.
    AnyFunction,
    /// Threads by a function or site in their creation backtrace.
    Creator,
    /// Tokio tasks by spawn site.
    SpawnSite,
    /// Child processes by program name, `argv[0]` or command line.
    Process,
}

impl IgnoreKind {
    /// Every kind, in the order the docs list them.
    pub(crate) const ALL: [IgnoreKind; 6] = [
        IgnoreKind::Thread,
        IgnoreKind::TopFunction,
        IgnoreKind::AnyFunction,
        IgnoreKind::Creator,
        IgnoreKind::SpawnSite,
        IgnoreKind::Process,
    ];

    /// The key: attribute argument, metadata key and `Options` method alike.
    pub(crate) const fn key(self) -> &'static str {
        match self {
            IgnoreKind::Thread => "ignore_thread",
            IgnoreKind::TopFunction => "ignore_top_function",
            IgnoreKind::AnyFunction => "ignore_any_function",
            IgnoreKind::Creator => "ignore_creator",
            IgnoreKind::SpawnSite => "ignore_spawn_site",
            IgnoreKind::Process => "ignore_process",
        }
    }

    /// A typical pattern, for error messages that show the right form.
    pub(crate) const fn example(self) -> &'static str {
        match self {
            IgnoreKind::Thread => "pool-*",
            IgnoreKind::TopFunction | IgnoreKind::AnyFunction => "my_crate::serve",
            IgnoreKind::Creator => "my_crate::start_pool",
            IgnoreKind::SpawnSite => "src/pool.rs",
            IgnoreKind::Process => "my-server*",
        }
    }

    /// The kind whose key is `key`.
    pub(crate) fn from_key(key: &str) -> Option<IgnoreKind> {
        IgnoreKind::ALL.into_iter().find(|kind| kind.key() == key)
    }
}

/// The valid key closest to `key` by edit distance, if it is close enough to be a typo (at most
/// a third of its length, at least one edit).
pub(crate) fn did_you_mean<'a>(key: &str, valid: &[&'a str]) -> Option<&'a str> {
    let limit = (key.chars().count() / 3).max(1);
    valid
        .iter()
        .map(|name| (edit_distance(key, name), *name))
        .filter(|(distance, _)| *distance <= limit)
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, name)| name)
}

/// Levenshtein distance (insertions, deletions, substitutions), over chars.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = (above + 1).min(row[j] + 1).min(diagonal + usize::from(ca != *cb));
            diagonal = above;
        }
    }
    row[b.len()]
}
