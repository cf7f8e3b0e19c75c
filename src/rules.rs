//! Ignore rules: what a rule can look at ([`Subject`]), how each kind matches, and the built-in
//! rules. Built on the model only; `Options` holds the rules a check applies.
//!
//! The kinds of rule are one table, [`IgnoreKind`] (in the model, shared with the macro crate):
//! the attribute's arguments, the `[package.metadata.leakcheck]` keys, the `Options` methods,
//! [`Rule`] and the paste-ready rule of a report all take their keys from it.

use crate::model::frame;
use crate::model::Frame;
pub(crate) use crate::model::IgnoreKind;

/// One reason not to report a survivor: a kind and its pattern.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Rule {
    pub(crate) kind: IgnoreKind,
    pub(crate) pattern: Box<str>,
}

/// What a rule can look at.
pub(crate) struct Subject<'a> {
    pub(crate) name: Option<&'a str>,
    /// `name` is the kernel's (`/proc/.../comm`), which keeps only the first 15 bytes of the real
    /// name; `false` when it is the full name std gave the thread.
    pub(crate) kernel_name: bool,
    /// Current stack, resolved; `None` when not captured.
    pub(crate) stack: Option<&'a [Frame]>,
    /// Creation backtrace, resolved (threads).
    pub(crate) created_at: &'a [Frame],
    /// `file:line` where the task was spawned (tasks).
    pub(crate) spawn_site: Option<&'a str>,
}

impl Rule {
    pub(crate) fn new(kind: IgnoreKind, pattern: &str) -> Rule {
        Rule {
            kind,
            pattern: pattern.into(),
        }
    }

    /// A short text for verbose reports: `ignore_thread("pool-*")`.
    pub(crate) fn describe(&self) -> String {
        format!("{}({:?})", self.kind.key(), self.pattern)
    }

    /// Whether the rule looks at a thread's current stack (which needs a capture).
    pub(crate) fn reads_stack(&self) -> bool {
        matches!(self.kind, IgnoreKind::TopFunction | IgnoreKind::AnyFunction)
    }

    /// Whether the rule looks at the creation backtrace (which needs symbols).
    pub(crate) fn reads_creation(&self) -> bool {
        self.kind == IgnoreKind::Creator
    }

    /// Whether the rule hides a thread or task; a child process is matched by
    /// [`Rule::matches_process`].
    pub(crate) fn matches(&self, subject: &Subject<'_>) -> bool {
        let pattern = &*self.pattern;
        match self.kind {
            IgnoreKind::Thread => subject
                .name
                .is_some_and(|name| thread_name_matches(pattern, name, subject.kernel_name)),
            IgnoreKind::TopFunction => subject
                .stack
                .and_then(frame::first_user_frame)
                .is_some_and(|frame| function_matches(&frame::match_key(pattern), &frame.key)),
            IgnoreKind::AnyFunction => subject.stack.is_some_and(|stack| {
                let pattern = frame::match_key(pattern);
                stack.iter().any(|frame| function_matches(&pattern, &frame.key))
            }),
            IgnoreKind::Creator => {
                let function = frame::match_key(pattern);
                subject.created_at.iter().any(|frame| {
                    function_matches(&function, &frame.key)
                        || frame::short_location(frame).is_some_and(|site| site_matches(pattern, &site))
                })
            }
            IgnoreKind::SpawnSite => subject.spawn_site.is_some_and(|site| site_matches(pattern, site)),
            IgnoreKind::Process => false,
        }
    }

    /// Whether the rule hides a child process with this command line (only `ignore_process`
    /// rules do).
    pub(crate) fn matches_process(&self, argv: &[String]) -> bool {
        self.kind == IgnoreKind::Process && process_matches(&self.pattern, argv)
    }
}

/// A built-in ignore rule: a named predicate over a survivor.
pub(crate) struct Builtin {
    pub(crate) name: &'static str,
    pub(crate) matches: fn(&Subject<'_>) -> bool,
}

/// The rules [`Options::builtin_rules`] turns on.
pub(crate) const BUILTINS: &[Builtin] = &[Builtin {
    name: "tokio_idle_blocking_thread",
    matches: tokio_idle_blocking_thread,
}];

/// A tokio blocking-pool thread parked waiting for work. Harmless: it belongs to a runtime that
/// is still alive (a shared or global one), holds no user work, and exits by itself after the
/// pool's keep-alive (10 s by default) or when its runtime shuts down. A pool thread still running
/// a `spawn_blocking` closure is *not* matched: its stack shows the closure, not the idle wait.
fn tokio_idle_blocking_thread(subject: &Subject<'_>) -> bool {
    subject.stack.is_some_and(|stack| {
        let in_pool = stack
            .iter()
            .any(|frame| frame.key.contains("tokio::runtime::blocking::pool::Inner::run"));
        let running_work = stack.iter().any(|frame| {
            frame.key.contains("blocking::task::BlockingTask")
                || frame.key.contains("tokio::runtime::blocking::pool::Task::run")
        });
        in_pool && !running_work
    })
}

/// `pattern` matches a child process: its program's name (`sleep`), `argv[0]` (`/bin/sleep`) or
/// its whole command line (`sleep 30`), exactly or as a glob.
fn process_matches(pattern: &str, argv: &[String]) -> bool {
    let Some(first) = argv.first() else {
        return false;
    };
    let program = first.rsplit('/').next().unwrap_or(first);
    [program, first.as_str(), argv.join(" ").as_str()]
        .iter()
        .any(|candidate| glob(pattern, candidate))
}

/// `pattern` matches `name` exactly or as a glob with `*` and `?`.
pub(crate) fn glob(pattern: &str, name: &str) -> bool {
    fn go(pattern: &[u8], name: &[u8]) -> bool {
        match (pattern.split_first(), name.split_first()) {
            (None, None) => true,
            (Some((b'*', rest)), _) => go(rest, name) || (!name.is_empty() && go(pattern, &name[1..])),
            (Some((b'?', rest)), Some((_, name_rest))) => go(rest, name_rest),
            (Some((p, rest)), Some((n, name_rest))) => p == n && go(rest, name_rest),
            _ => false,
        }
    }
    go(pattern.as_bytes(), name.as_bytes())
}

/// How many bytes of a thread's name the kernel keeps (`TASK_COMM_LEN` less the NUL).
pub(crate) const KERNEL_NAME_BYTES: usize = 15;

/// `pattern` matches a thread's `name` (exactly or as a glob). A kernel name of the full 15 bytes
/// may be the start of a longer name: it matches when the pattern matches some name that starts
/// with it, so `ignore_thread = "database-connection-pool"` hides `database-connec`.
pub(crate) fn thread_name_matches(pattern: &str, name: &str, kernel_name: bool) -> bool {
    if glob(pattern, name) {
        return true;
    }
    kernel_name && name.len() >= KERNEL_NAME_BYTES && glob_prefix(pattern, name)
}

/// Whether `pattern` matches some string that starts with `prefix`: once the prefix is consumed,
/// whatever remains of the pattern can match a suffix of the real name.
fn glob_prefix(pattern: &str, prefix: &str) -> bool {
    fn go(pattern: &[u8], name: &[u8]) -> bool {
        match (pattern.split_first(), name.split_first()) {
            (_, None) => true,
            (Some((b'*', rest)), _) => go(rest, name) || go(pattern, &name[1..]),
            (Some((b'?', rest)), Some((_, name_rest))) => go(rest, name_rest),
            (Some((p, rest)), Some((n, name_rest))) => p == n && go(rest, name_rest),
            (None, Some(_)) => false,
        }
    }
    go(pattern.as_bytes(), prefix.as_bytes())
}

/// `pattern` names `function` by its trailing path segments (closures ignored), or as a glob; both
/// in the form [`frame::match_key`] writes (generic arguments dropped).
pub(crate) fn function_matches(pattern: &str, function: &str) -> bool {
    let function = function.replace("::{{closure}}", "");
    if pattern.contains(['*', '?']) {
        return glob(pattern, &function);
    }
    function == pattern || function.ends_with(&format!("::{pattern}"))
}

/// `pattern` names `site` (`file:line`) exactly, by a trailing path (`pool.rs:40`), or by its file.
pub(crate) fn site_matches(pattern: &str, site: &str) -> bool {
    if pattern.contains(['*', '?']) {
        return glob(pattern, site);
    }
    let file = site.rsplit_once(':').map_or(site, |(file, _)| file);
    [site, file]
        .iter()
        .any(|candidate| *candidate == pattern || candidate.ends_with(&format!("/{pattern}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Globs match whole names, with `*` and `?`.
    #[test]
    fn globs() {
        assert!(glob("pool-*", "pool-3"));
        assert!(glob("pool-?", "pool-3"));
        assert!(!glob("pool-?", "pool-33"));
        assert!(glob("logger", "logger"));
        assert!(!glob("logger", "logger-2"));
        assert!(glob("*worker*", "tokio-worker-1"));
    }

    /// A 15-byte kernel name matches a pattern for the longer name it may cut off, exactly or as a
    /// glob; a full std name, or a kernel name shorter than 15 bytes, must match whole.
    #[test]
    fn truncated_kernel_names() {
        let kernel = |pattern: &str, name: &str| thread_name_matches(pattern, name, true);
        assert!(kernel("database-connection-pool", "database-connec"));
        assert!(kernel("database-connection-*", "database-connec"));
        assert!(kernel("database-*", "database-connec"));
        assert!(
            kernel("*-pool", "database-connec"),
            "the cut-off part may end in -pool"
        );
        assert!(kernel("database-con?ection-pool", "database-connec"));
        assert!(kernel("database-connec", "database-connec"));
        assert!(!kernel("database-connectors", "database-connex"));
        assert!(!kernel("cache-connection-pool", "database-connec"));
        assert!(
            !kernel("database-connection-pool", "database-conne"),
            "14 bytes: not truncated"
        );
        assert!(
            !kernel("database-c?", "database-connec"),
            "the pattern ends before the name"
        );
        // A full name std recorded is matched as written.
        assert!(!thread_name_matches(
            "database-connection-pool",
            "database-connec",
            false
        ));
        assert!(thread_name_matches(
            "database-connection-pool",
            "database-connection-pool",
            false
        ));
    }

    /// A thread-name rule hides a thread known only by its kernel name.
    #[test]
    fn thread_name_rule_on_kernel_name() {
        let subject = Subject {
            name: Some("database-connec"),
            kernel_name: true,
            stack: None,
            created_at: &[],
            spawn_site: None,
        };
        assert!(Rule::new(IgnoreKind::Thread, "database-connection-pool").matches(&subject));
        assert!(
            !Rule::new(IgnoreKind::Thread, "database-connection-pool").matches(&Subject {
                kernel_name: false,
                ..subject
            })
        );
    }

    /// Function patterns match by trailing segments, ignoring closures, never by substring.
    #[test]
    fn functions() {
        assert!(function_matches("logger::run", "my_crate::logger::run"));
        assert!(function_matches(
            "logger::run",
            "my_crate::logger::run::{{closure}}"
        ));
        assert!(function_matches("my_crate::logger::run", "my_crate::logger::run"));
        assert!(!function_matches("run", "my_crate::logger::rerun"));
        assert!(function_matches("my_crate::*", "my_crate::logger::run"));
    }

    /// Function rules and the built-in rule read v0 names (`cargo llvm-cov`) as they read legacy
    /// ones: a pattern written with or without generic arguments matches either.
    #[test]
    fn v0_names() {
        let frames = |names: &[&str]| -> Vec<Frame> {
            names
                .iter()
                .map(|name| Frame::new((*name).into(), None, None))
                .collect()
        };
        let idle = frames(&[
            "<tokio::runtime::blocking::pool::Inner>::run",
            "<tokio::runtime::blocking::pool::Spawner>::spawn_thread::{closure#0}",
        ]);
        let busy = frames(&[
            "<tokio::runtime::blocking::task::BlockingTask<app::work::{closure#0}> as core::future::future::Future>::poll",
            "<tokio::runtime::blocking::pool::Inner>::run",
        ]);
        let subject = |stack| Subject {
            name: Some("tokio-runtime-worker"),
            kernel_name: false,
            stack: Some(stack),
            created_at: &[],
            spawn_site: None,
        };
        assert!(tokio_idle_blocking_thread(&subject(&idle)));
        assert!(!tokio_idle_blocking_thread(&subject(&busy)));
        let pool = frames(&["<my_crate::Pool<u8>>::worker::{closure#0}"]);
        for pattern in ["my_crate::Pool::worker", "Pool<T>::worker", "my_crate::Pool*"] {
            assert!(
                Rule::new(IgnoreKind::AnyFunction, pattern).matches(&subject(&pool)),
                "{pattern}"
            );
        }
        assert!(!Rule::new(IgnoreKind::AnyFunction, "Pool::work").matches(&subject(&pool)));
    }

    /// Site patterns match a whole site, a trailing path, or the file alone.
    #[test]
    fn sites() {
        assert!(site_matches("tests/pool.rs:40", "tests/pool.rs:40"));
        assert!(site_matches("pool.rs:40", "tests/pool.rs:40"));
        assert!(site_matches("tests/pool.rs", "tests/pool.rs:40"));
        assert!(!site_matches("pool.rs:4", "tests/pool.rs:40"));
        assert!(!site_matches("ool.rs", "tests/pool.rs:40"));
    }
}
