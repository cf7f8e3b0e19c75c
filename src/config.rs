//! The process's settings: defaults, then the project's `[package.metadata.leakcheck]`
//! ([`crate::config::project`]), then the environment, read once per process into one [`Config`].
//!
//! Its [`Settings`] are the base of every check: `Options::settings` overrides them with the
//! check's own (attribute arguments, builder calls) once per check, and the resulting value is
//! what the check, the settle loop and the report receive. Nothing below re-reads a setting.
//!
//! The `LEAKCHECK_*` variables, their values and defaults are documented in the guide's
//! environment chapter ([`crate::_guide::environment`]).
//!
//! A malformed value is an error that names the variable and the valid forms; it fails the check
//! that reads it (never silently falls back).

pub(crate) mod project;

use std::ffi::OsStr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

pub(crate) use crate::model::duration::parse as parse_duration;
use crate::model::IgnoreKind;

/// The default settle deadline: long enough for a thread that is finishing on a loaded 2-core CI
/// machine, paid in full only by a test that really leaks.
const DEFAULT_SETTLE: Duration = Duration::from_secs(2);

/// How long the early verdict watches a blocked scope (`check::early`): chosen on the parallel
/// stress run (`benches/README.md`).
const EARLY_WINDOW: Duration = Duration::from_millis(10);

/// How one check behaves. The process's base is [`Config::settings`]; a check overrides it once
/// with its own options and hands the result down.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Settings {
    /// How long survivors get to finish before they are reported.
    pub(crate) settle: Duration,
    /// Reports also list what rules hid.
    pub(crate) verbose: bool,
    /// Reports print whole stacks instead of folding library frames.
    pub(crate) full_stacks: bool,
    /// Surviving threads' current stacks are captured.
    pub(crate) capture_stacks: bool,
    /// Leaked child processes are killed and reaped after they are reported.
    pub(crate) kill_children: bool,
    /// The built-in ignore rules apply.
    pub(crate) builtin_rules: bool,
    /// The observation window of the early verdict (see `check::early`), or `None`: the settle
    /// always runs to its deadline. `LEAKCHECK_EARLY=off` (or a duration), for comparisons.
    pub(crate) early: Option<Duration>,
}

/// Everything read once per process.
#[derive(Debug, Clone)]
pub(crate) struct Config {
    /// `LEAKCHECK`: checks run at all.
    pub(crate) enabled: bool,
    pub(crate) json: Option<PathBuf>,
    pub(crate) lineage: bool,
    /// The base of every check: defaults, then the project's, then the environment's.
    pub(crate) settings: Settings,
    /// The project's ignore rules (kind, pattern), which every `Options::new()` starts from.
    pub(crate) ignores: Vec<(IgnoreKind, String)>,
}

/// The process's configuration, or the first malformed variable or project setting.
pub(crate) fn get() -> Result<&'static Config, String> {
    static CONFIG: OnceLock<Result<Config, String>> = OnceLock::new();
    CONFIG.get_or_init(read).as_ref().map_err(Clone::clone)
}

fn read() -> Result<Config, String> {
    let project = crate::config::project::get()?;
    let switch = |name: &str, default: bool| -> Result<bool, String> {
        Ok(var(name)
            .map(|value| parse_switch(name, &value))
            .transpose()?
            .unwrap_or(default))
    };
    // Read in this order, so that of several malformed variables the first is named.
    let enabled = switch("LEAKCHECK", true)?;
    let settle = var("LEAKCHECK_SETTLE")
        .map(|value| {
            parse_duration(&value)
                .map_err(|why| format!("leakcheck: invalid `LEAKCHECK_SETTLE={value}`: {why}"))
        })
        .transpose()?
        .or(project.and_then(|project| project.settle))
        .unwrap_or(DEFAULT_SETTLE);
    let full_stacks = switch("LEAKCHECK_FULL_STACKS", false)?;
    let verbose = switch("LEAKCHECK_VERBOSE", false)?;
    let lineage = switch("LEAKCHECK_LINEAGE", true)?;
    let kill_children = switch("LEAKCHECK_KILL_CHILDREN", true)?;
    let early = match var("LEAKCHECK_EARLY") {
        None => Some(EARLY_WINDOW),
        Some(value) => match (parse_switch("LEAKCHECK_EARLY", &value), parse_duration(&value)) {
            (Ok(on), _) => on.then_some(EARLY_WINDOW),
            (_, Ok(window)) => Some(window),
            (Err(why), _) => return Err(why),
        },
    };
    Ok(Config {
        enabled,
        json: var("LEAKCHECK_JSON").map(|path| resolve_json_path(PathBuf::from(path))),
        lineage,
        settings: Settings {
            settle,
            verbose,
            full_stacks,
            capture_stacks: stacks_enabled(),
            kill_children,
            builtin_rules: project.and_then(|project| project.builtin_rules).unwrap_or(true),
            early,
        },
        ignores: project.map_or_else(Vec::new, |project| project.ignores.clone()),
    })
}

/// A relative `LEAKCHECK_JSON` is resolved against the workspace root, so that every package's
/// test binaries (cargo runs each in its own package directory) append to one file.
fn resolve_json_path(path: PathBuf) -> PathBuf {
    if path.is_absolute() {
        return path;
    }
    match var("CARGO_MANIFEST_DIR") {
        Some(dir) => workspace_root(std::path::Path::new(&dir)).join(path),
        None => path,
    }
}

/// The workspace root above a package directory: the nearest ancestor (or itself) holding a
/// `Cargo.lock`, else the nearest whose `Cargo.toml` has a `[workspace]` table, else the package
/// directory itself.
pub(crate) fn workspace_root(package: &std::path::Path) -> PathBuf {
    let ancestors = || package.ancestors();
    if let Some(dir) = ancestors().find(|dir| dir.join("Cargo.lock").is_file()) {
        return dir.to_path_buf();
    }
    let declares_workspace = |dir: &std::path::Path| {
        std::fs::read_to_string(dir.join("Cargo.toml"))
            .is_ok_and(|text| text.lines().any(|line| line.trim() == "[workspace]"))
    };
    ancestors()
        .find(|dir| declares_workspace(dir))
        .unwrap_or(package)
        .to_path_buf()
}

/// The test binary's name without cargo's hash suffix (`compose` for `compose-0123abcd...`).
pub(crate) fn binary_name() -> Option<String> {
    let exe = std::env::current_exe().ok()?;
    let stem = exe.file_stem()?.to_string_lossy().into_owned();
    Some(match stem.rsplit_once('-') {
        Some((name, hash)) if hash.len() == 16 && hash.bytes().all(|b| b.is_ascii_hexdigit()) => {
            name.to_string()
        }
        _ => stem,
    })
}

/// Whether the process runs under GitHub Actions (`GITHUB_ACTIONS=true`), where a leak also
/// prints a workflow-command annotation.
pub(crate) fn github_actions() -> bool {
    var("GITHUB_ACTIONS").is_some_and(|value| value == "true")
}

/// Says once per process that `LEAKCHECK=off` disabled the checks.
pub(crate) fn say_disabled_once() {
    static SAID: AtomicBool = AtomicBool::new(false);
    if !SAID.swap(true, Ordering::Relaxed) {
        // Written to the process's stderr directly: libtest captures `eprintln!` of a passing
        // test, and this notice must be seen in a captured run.
        use std::io::Write as _;
        let _ = writeln!(
            std::io::stderr(),
            "leakcheck: LEAKCHECK=off: leak checks are disabled in this process"
        );
    }
}

/// Name of the environment variable that turns stack capture on or off.
const STACKS_VAR: &str = "LEAKCHECK_STACKS";

/// Whether stack capture is on: `LEAKCHECK_STACKS` unset or `on`/`1`/`true` (read once).
///
/// An unrecognized value leaves capture on; [`stacks_env_error`] describes it.
pub(crate) fn stacks_enabled() -> bool {
    stacks_switch().0
}

/// A message naming `LEAKCHECK_STACKS` and its valid forms if its value is not one of them.
pub(crate) fn stacks_env_error() -> Option<String> {
    stacks_switch().1.clone()
}

/// The parsed switch: (enabled, complaint about the value), read once per process.
fn stacks_switch() -> &'static (bool, Option<String>) {
    static SWITCH: OnceLock<(bool, Option<String>)> = OnceLock::new();
    SWITCH.get_or_init(|| parse_stacks_switch(std::env::var_os(STACKS_VAR).as_deref()))
}

/// Parses the value of `LEAKCHECK_STACKS`; anything unrecognized means on, with a complaint.
fn parse_stacks_switch(value: Option<&OsStr>) -> (bool, Option<String>) {
    let Some(value) = value else {
        return (true, None);
    };
    match value.to_str().map(|v| v.trim().to_ascii_lowercase()).as_deref() {
        Some("" | "on" | "1" | "true") => (true, None),
        Some("off" | "0" | "false") => (false, None),
        _ => (
            true,
            Some(format!(
                "leakcheck: invalid value {value:?} for `{STACKS_VAR}`: expected `on`, `1`, `true`, \
                 `off`, `0` or `false`; stack capture stays on"
            )),
        ),
    }
}

fn var(name: &str) -> Option<String> {
    std::env::var_os(name).map(|value| value.to_string_lossy().into_owned())
}

/// `on`/`off` and their usual spellings.
pub(crate) fn parse_switch(name: &str, value: &str) -> Result<bool, String> {
    match value.trim().to_ascii_lowercase().as_str() {
        "1" | "on" | "true" | "yes" => Ok(true),
        "0" | "off" | "false" | "no" => Ok(false),
        _ => Err(format!(
            "leakcheck: invalid `{name}={value}`: expected `on` or `off` (also `1`/`0`, `true`/`false`)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Durations parse in humantime's forms and reject the rest with the valid forms.
    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2s"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("250us"), Ok(Duration::from_micros(250)));
        assert_eq!(parse_duration("2 seconds"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("1m"), Ok(Duration::from_secs(60)));
        assert_eq!(parse_duration(" 1m 30s "), Ok(Duration::from_secs(90)));
        for bad in ["", "2", "s", "-1s", "soon", "1e3ms"] {
            let error = parse_duration(bad).unwrap_err();
            assert!(error.contains("`500ms`"), "{bad}: {error}");
        }
    }

    /// A relative JSON path lands at the workspace root: the directory with the `Cargo.lock`.
    #[test]
    fn workspace_root_has_the_lockfile() {
        let package = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let root = workspace_root(&package.join("macros"));
        assert_eq!(root, package);
        assert_eq!(
            binary_name().as_deref().map(|n| n.starts_with("leakcheck")),
            Some(true)
        );
    }

    /// Switches accept the usual spellings and name the variable when they do not.
    #[test]
    fn switches() {
        assert_eq!(parse_switch("LEAKCHECK", "off"), Ok(false));
        assert_eq!(parse_switch("LEAKCHECK", "ON"), Ok(true));
        let error = parse_switch("LEAKCHECK", "maybe").unwrap_err();
        assert!(
            error.contains("`LEAKCHECK=maybe`") && error.contains("`off`"),
            "{error}"
        );
    }

    /// The switch accepts the documented spellings and complains, naming the variable, otherwise.
    #[test]
    fn stacks_switch_values() {
        let parse = |v: &str| parse_stacks_switch(Some(OsStr::new(v)));
        assert_eq!(parse_stacks_switch(None), (true, None));
        for on in ["on", "1", "true", "TRUE", " On "] {
            assert_eq!(parse(on), (true, None), "{on}");
        }
        for off in ["off", "0", "false", "OFF"] {
            assert_eq!(parse(off), (false, None), "{off}");
        }
        let (on, complaint) = parse("nope");
        assert!(on);
        let complaint = complaint.unwrap();
        assert!(complaint.contains("LEAKCHECK_STACKS") && complaint.contains("\"nope\""));
        assert!(complaint.contains("`off`"));
    }
}
