//! Project-wide settings: the `[package.metadata.leakcheck]` table of the tested package's
//! `Cargo.toml`, read once per process at run time.
//!
//! ```toml
//! [package.metadata.leakcheck]
//! settle = "1s"                          # humantime, as `#[leak_test(settle)]`
//! ignore_thread = ["pool-*"]             # each `ignore_*` key: a string or an array of them
//! ignore_top_function = ["my_crate::metrics::run"]
//! ignore_any_function = []
//! ignore_creator = ["my_crate::pool::start"]
//! ignore_spawn_site = ["src/pool.rs"]
//! ignore_process = ["my-server*"]
//! builtin_rules = true                   # `Options::builtin_rules`
//! ```
//!
//! Cargo (and cargo-nextest) set `CARGO_MANIFEST_DIR` to the package's directory when they run
//! its test binaries, so every `#[leak_test]`, `verify_none*` and `check_binary!` in the package's
//! tests starts from these settings: its scalar ones through the process's base settings
//! ([`crate::config`]), its ignore rules through [`crate::Options::new`]. A test binary run by hand
//! without that variable has no project settings. A malformed table is an error naming the file
//! and the key; it fails every check in the process (never silently ignored).

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use crate::model::{did_you_mean, IgnoreKind};

/// The keys of the table, in the order the docs list them: `settle`, one per ignore kind,
/// `builtin_rules`.
fn keys() -> Vec<&'static str> {
    let mut keys = vec!["settle"];
    keys.extend(IgnoreKind::ALL.map(IgnoreKind::key));
    keys.push("builtin_rules");
    keys
}

/// The parsed table.
#[derive(Debug, Default, Clone, PartialEq)]
pub(crate) struct Project {
    /// The `Cargo.toml` it came from.
    pub(crate) file: PathBuf,
    pub(crate) settle: Option<Duration>,
    /// `(kind, pattern)`, in the order written.
    pub(crate) ignores: Vec<(IgnoreKind, String)>,
    pub(crate) builtin_rules: Option<bool>,
}

/// The settings of the package under test, `None` without `CARGO_MANIFEST_DIR` or table; an
/// error message naming the file and key if the table is malformed.
pub(crate) fn get() -> Result<Option<&'static Project>, String> {
    static PROJECT: OnceLock<Result<Option<Project>, String>> = OnceLock::new();
    PROJECT
        .get_or_init(|| match std::env::var_os("CARGO_MANIFEST_DIR") {
            Some(dir) => read(&Path::new(&dir).join("Cargo.toml")),
            None => Ok(None),
        })
        .as_ref()
        .map(Option::as_ref)
        .map_err(Clone::clone)
}

/// Reads and parses `file`; a missing file means no settings.
pub(crate) fn read(file: &Path) -> Result<Option<Project>, String> {
    match std::fs::read_to_string(file) {
        Ok(text) => parse(file, &text),
        Err(_) => Ok(None),
    }
}

/// Parses a `Cargo.toml`'s text; `file` names it in errors.
pub(crate) fn parse(file: &Path, text: &str) -> Result<Option<Project>, String> {
    let shown = file.display();
    let manifest: toml::Table = text
        .parse()
        .map_err(|error| format!("leakcheck: cannot parse `{shown}`: {error}"))?;
    let Some(table) = manifest
        .get("package")
        .and_then(|package| package.get("metadata"))
        .and_then(|metadata| metadata.get("leakcheck"))
    else {
        return Ok(None);
    };
    let error = |key: &str, why: &str| {
        format!("leakcheck: invalid `{key}` in `[package.metadata.leakcheck]` of `{shown}`: {why}")
    };
    let Some(table) = table.as_table() else {
        return Err(format!(
            "leakcheck: `package.metadata.leakcheck` in `{shown}` must be a table"
        ));
    };
    let mut project = Project {
        file: file.to_path_buf(),
        ..Project::default()
    };
    for (key, value) in table {
        match key.as_str() {
            "settle" => {
                let text = value
                    .as_str()
                    .ok_or_else(|| error(key, "expected a string like `settle = \"2s\"`"))?;
                let settle = crate::model::duration::parse(text)
                    .map_err(|why| error(key, &format!("`{text}`: {why}")))?;
                project.settle = Some(settle);
            }
            "builtin_rules" => {
                let on = value
                    .as_bool()
                    .ok_or_else(|| error(key, "expected `true` or `false`"))?;
                project.builtin_rules = Some(on);
            }
            name => {
                let Some(kind) = IgnoreKind::from_key(name) else {
                    let keys = keys();
                    let mut why = String::from("unknown key");
                    if let Some(near) = did_you_mean(name, &keys) {
                        why.push_str(&format!("; did you mean `{near}`?"));
                    }
                    why.push_str(&format!(" valid keys: {}", list(&keys)));
                    return Err(error(key, &why));
                };
                let expected = &format!(
                    "expected a string or an array of strings, like `[{:?}]`",
                    kind.example()
                );
                let patterns: Vec<String> = match value {
                    toml::Value::String(pattern) => vec![pattern.clone()],
                    toml::Value::Array(items) => items
                        .iter()
                        .map(|item| item.as_str().map(String::from))
                        .collect::<Option<_>>()
                        .ok_or_else(|| error(key, expected))?,
                    _ => return Err(error(key, expected)),
                };
                project
                    .ignores
                    .extend(patterns.into_iter().map(|pattern| (kind, pattern)));
            }
        }
    }
    Ok(Some(project))
}

fn list(keys: &[&str]) -> String {
    keys.iter()
        .map(|key| format!("`{key}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(table: &str) -> Result<Option<Project>, String> {
        parse(
            Path::new("/app/Cargo.toml"),
            &format!("[package]\nname = \"app\"\n{table}"),
        )
    }

    /// Every key is read; a string and an array both give patterns.
    #[test]
    fn reads_every_key() {
        let project = parsed(
            "[package.metadata.leakcheck]\nsettle = \"1.5s\"\nignore_thread = [\"pool-*\", \"x\"]\n\
             ignore_creator = \"app::start\"\nignore_process = \"app-server*\"\nbuiltin_rules = false\n",
        )
        .unwrap()
        .unwrap();
        assert_eq!(project.settle, Some(Duration::from_millis(1500)));
        assert_eq!(
            project.ignores,
            vec![
                (IgnoreKind::Creator, "app::start".to_string()),
                (IgnoreKind::Process, "app-server*".to_string()),
                (IgnoreKind::Thread, "pool-*".to_string()),
                (IgnoreKind::Thread, "x".to_string()),
            ]
        );
        assert_eq!(project.builtin_rules, Some(false));
        assert_eq!(parsed("").unwrap(), None);
        assert_eq!(parsed("[package.metadata.other]\nx = 1\n").unwrap(), None);
    }

    /// A malformed setting names the file and the key, and says what is valid.
    #[test]
    fn malformed_settings_name_file_and_key() {
        let error = parsed("[package.metadata.leakcheck]\nsettle = \"soon\"\n").unwrap_err();
        assert!(
            error.starts_with(
                "leakcheck: invalid `settle` in `[package.metadata.leakcheck]` of `/app/Cargo.toml`"
            ),
            "{error}"
        );
        assert!(error.contains("`2 seconds`"), "{error}");
        let error = parsed("[package.metadata.leakcheck]\nignore_threads = [\"a\"]\n").unwrap_err();
        assert!(error.contains("invalid `ignore_threads`"), "{error}");
        assert!(error.contains("did you mean `ignore_thread`?"), "{error}");
        let error = parsed("[package.metadata.leakcheck]\nignore_thread = [1]\n").unwrap_err();
        assert!(
            error.contains("expected a string or an array of strings"),
            "{error}"
        );
        let error = parsed("[package.metadata.leakcheck]\nbuiltin_rules = \"no\"\n").unwrap_err();
        assert!(
            error.contains("`builtin_rules`") && error.contains("`true`"),
            "{error}"
        );
        let error = parse(Path::new("/app/Cargo.toml"), "[package\n").unwrap_err();
        assert!(error.contains("cannot parse `/app/Cargo.toml`"), "{error}");
    }
}
