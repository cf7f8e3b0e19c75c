//! [`Options`]: what a check ignores and how long it waits, and the checks as its methods.
//!
//! Options hold a check's own settings, each unset until a builder call (or an attribute
//! argument) sets it; [`Options::settings`] lays them over the process's base (defaults, project,
//! environment: [`crate::config`]) once per check. Ignore rules add up instead: [`Options::new`]
//! starts from the project's, and each `ignore_*` call adds one.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use crate::config::{self, Settings};
#[cfg(feature = "tokio")]
use crate::probe::tasks;
use crate::probe::{children, lineage, sys};
use crate::report::error::LeakError;
use crate::rules::{IgnoreKind, Rule};

/// How a check behaves: settle deadline, ignore rules, report detail.
///
/// Built with chained calls from [`Options::new`]; every check ([`Options::find`],
/// [`Options::verify_none`] and their async forms) reads it, and `#[leak_test(...)]` arguments
/// build one.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
///
/// let options = leakcheck::Options::new()
///     .settle(Duration::from_secs(5))
///     .ignore_thread("metrics-exporter")
///     .ignore_top_function("my_crate::logger::run");
/// options.verify_none();
/// ```
#[derive(Clone, Debug)]
pub struct Options {
    pub(crate) settle: Option<Duration>,
    pub(crate) rules: Vec<Rule>,
    pub(crate) baseline: Option<Arc<Baseline>>,
    pub(crate) builtin_rules: Option<bool>,
    pub(crate) capture_stacks: Option<bool>,
    pub(crate) full_stacks: Option<bool>,
    pub(crate) verbose: Option<bool>,
    pub(crate) kill_children: Option<bool>,
    /// Where the check was asked for (the test's `#[leak_test]` line, or the `verify_none` call):
    /// the report's JSON line and GitHub annotation point there.
    pub(crate) location: Option<&'static std::panic::Location<'static>>,
}

impl Default for Options {
    /// The same as [`Options::new`].
    fn default() -> Self {
        Self::new()
    }
}

impl Options {
    /// Options with the defaults: the package's `[package.metadata.leakcheck]` settings (ignore
    /// rules, `builtin_rules`, `settle`; see the [guide](crate::_guide::options)), the settle
    /// deadline from `LEAKCHECK_SETTLE` (else the package's `settle`, else 2 s), the built-in
    /// ignore rules, folded stacks. Builder calls add rules to the package's and override its settings and the
    /// environment's (each check lays them over those once, when it starts).
    ///
    /// # Examples
    ///
    /// ```
    /// leakcheck::Options::new().verify_none();
    /// ```
    pub fn new() -> Self {
        // The project's rules; a malformed table fails the check (in `Options::settings`).
        let rules = config::get().map_or_else(
            |_| Vec::new(),
            |config| {
                let ignores = config.ignores.iter();
                ignores.map(|(kind, pattern)| Rule::new(*kind, pattern)).collect()
            },
        );
        Options {
            settle: None,
            rules,
            baseline: None,
            builtin_rules: None,
            capture_stacks: None,
            full_stacks: None,
            verbose: None,
            kill_children: None,
            location: None,
        }
    }

    /// How long a check waits for survivors to finish before it reports them (the settle
    /// deadline). A clean pass never waits; a leak is reported after about this long.
    ///
    /// # Examples
    ///
    /// ```
    /// let options = leakcheck::Options::new().settle(std::time::Duration::from_millis(500));
    /// # options.verify_none();
    /// ```
    pub fn settle(mut self, deadline: Duration) -> Self {
        self.settle = Some(deadline);
        self
    }

    /// Ignores threads whose name is `pattern`, or matches it as a glob (`*` any run of
    /// characters, `?` one). Names are the kernel's (at most 15 bytes on Linux).
    ///
    /// # Examples
    ///
    /// ```
    /// let options = leakcheck::Options::new().ignore_thread("pool-*");
    /// # options.verify_none();
    /// ```
    pub fn ignore_thread(self, pattern: &str) -> Self {
        self.ignore(IgnoreKind::Thread, pattern)
    }

    /// Ignores threads stuck in `function`: the first frame of their current stack outside std,
    /// tokio and other libraries (the frame a report marks as "stuck in"). A path matches by its
    /// trailing segments: `logger::run` matches `my_crate::logger::run`. Needs stack capture.
    ///
    /// # Examples
    ///
    /// ```
    /// let options = leakcheck::Options::new().ignore_top_function("logger::run");
    /// # options.verify_none();
    /// ```
    pub fn ignore_top_function(self, function: &str) -> Self {
        self.ignore(IgnoreKind::TopFunction, function)
    }

    /// Ignores threads that have `function` anywhere in their current stack (std and library
    /// frames included, e.g. `tokio::runtime::blocking::pool`). Needs stack capture.
    ///
    /// # Examples
    ///
    /// ```
    /// let options = leakcheck::Options::new().ignore_any_function("metrics::exporter::serve");
    /// # options.verify_none();
    /// ```
    pub fn ignore_any_function(self, function: &str) -> Self {
        self.ignore(IgnoreKind::AnyFunction, function)
    }

    /// Ignores threads created by `creator`: a function in their creation backtrace
    /// (`my_crate::pool::start`) or a creation site (`src/pool.rs:40`, `src/pool.rs`).
    ///
    /// # Examples
    ///
    /// ```
    /// let options = leakcheck::Options::new().ignore_creator("my_crate::pool::start");
    /// # options.verify_none();
    /// ```
    pub fn ignore_creator(self, creator: &str) -> Self {
        self.ignore(IgnoreKind::Creator, creator)
    }

    /// Ignores tokio tasks spawned at `site` (`src/server.rs:88` or `src/server.rs`). Spawn sites
    /// are known only in builds with `--cfg tokio_unstable`; elsewhere the rule cannot match.
    ///
    /// # Examples
    ///
    /// ```
    /// let options = leakcheck::Options::new().ignore_spawn_site("src/server.rs:88");
    /// # options.verify_none();
    /// ```
    pub fn ignore_spawn_site(self, site: &str) -> Self {
        self.ignore(IgnoreKind::SpawnSite, site)
    }

    /// Ignores child processes whose program name (`sleep`), `argv[0]` (`/usr/bin/sleep`) or whole
    /// command line (`sleep 30`) is `pattern` or matches it as a glob (`*` any run of characters,
    /// `?` one).
    ///
    /// # Examples
    ///
    /// ```
    /// let options = leakcheck::Options::new().ignore_process("my-test-server*");
    /// # options.verify_none();
    /// ```
    pub fn ignore_process(self, pattern: &str) -> Self {
        self.ignore(IgnoreKind::Process, pattern)
    }

    /// Whether a check kills (`SIGKILL`) and reaps the leaked child processes it reported, so a
    /// failing run leaves no process behind (default: on, unless `LEAKCHECK_KILL_CHILDREN=off`).
    ///
    /// # Examples
    ///
    /// ```
    /// let options = leakcheck::Options::new().kill_children(false);
    /// # options.verify_none();
    /// ```
    pub fn kill_children(mut self, on: bool) -> Self {
        self.kill_children = Some(on);
        self
    }

    /// Takes everything alive now as the baseline: threads (and, in [`Options::find_async`], the
    /// current runtime's tasks) that exist when this is called are never reported.
    ///
    /// # Examples
    ///
    /// ```
    /// let _background = std::thread::spawn(|| std::thread::sleep(std::time::Duration::from_millis(50)));
    /// let options = leakcheck::Options::new().ignore_current();
    /// options.verify_none();
    /// ```
    pub fn ignore_current(mut self) -> Self {
        self.baseline = Some(Arc::new(Baseline::now()));
        self
    }

    /// Turns the built-in ignore rules on (the default) or off; the
    /// [guide](crate::_guide::options#built-in-rules) lists them.
    ///
    /// # Examples
    ///
    /// ```
    /// let options = leakcheck::Options::new().builtin_rules(false);
    /// # options.verify_none();
    /// ```
    pub fn builtin_rules(mut self, on: bool) -> Self {
        self.builtin_rules = Some(on);
        self
    }

    /// Whether reports capture each surviving thread's current stack (default: on, unless
    /// `LEAKCHECK_STACKS=off`). Capture signals the thread; turn it off under a debugger that
    /// stops on every signal.
    ///
    /// # Examples
    ///
    /// ```
    /// let options = leakcheck::Options::new().capture_stacks(false);
    /// # options.verify_none();
    /// ```
    pub fn capture_stacks(mut self, on: bool) -> Self {
        self.capture_stacks = Some(on);
        self
    }

    /// Whether reports print whole stacks instead of folding library frames (default: off, unless
    /// `LEAKCHECK_FULL_STACKS=1`).
    ///
    /// # Examples
    ///
    /// ```
    /// let options = leakcheck::Options::new().full_stacks(true);
    /// # options.verify_none();
    /// ```
    pub fn full_stacks(mut self, on: bool) -> Self {
        self.full_stacks = Some(on);
        self
    }

    /// Whether reports also list the survivors that ignore rules hid, with the rule that hid each
    /// (default: off, unless `LEAKCHECK_VERBOSE=1`).
    ///
    /// # Examples
    ///
    /// ```
    /// let options = leakcheck::Options::new().verbose(true);
    /// # options.verify_none();
    /// ```
    pub fn verbose(mut self, on: bool) -> Self {
        self.verbose = Some(on);
        self
    }

    /// Adds a rule of `kind`: what every `ignore_*` method does.
    fn ignore(mut self, kind: IgnoreKind, pattern: &str) -> Self {
        self.rules.push(Rule::new(kind, pattern));
        self
    }

    /// These options, remembering where the check was asked for.
    pub(crate) fn at(mut self, location: &'static std::panic::Location<'static>) -> Self {
        self.location = Some(location);
        self
    }

    /// The settings of one check: the process's base (defaults, project, environment) with these
    /// options' own laid over it, or `None` when `LEAKCHECK=off`. Each check calls this once and
    /// hands the value down.
    pub(crate) fn settings(&self) -> Result<Option<Settings>, LeakError> {
        let config = config::get().map_err(LeakError::config)?;
        if let Some(message) = config::stacks_env_error() {
            return Err(LeakError::config(message));
        }
        if !config.enabled {
            config::say_disabled_once();
            return Ok(None);
        }
        crate::report::unchecked::say_once();
        let base = config.settings;
        Ok(Some(Settings {
            settle: self.settle.unwrap_or(base.settle),
            verbose: self.verbose.unwrap_or(base.verbose),
            full_stacks: self.full_stacks.unwrap_or(base.full_stacks),
            // `LEAKCHECK_STACKS=off` wins: the capture itself checks it too.
            capture_stacks: self.capture_stacks.unwrap_or(true) && base.capture_stacks,
            kill_children: self.kill_children.unwrap_or(base.kill_children),
            builtin_rules: self.builtin_rules.unwrap_or(base.builtin_rules),
            early: base.early,
        }))
    }
}

/// Everything alive when [`Options::ignore_current`] was called.
#[derive(Debug, Default)]
pub(crate) struct Baseline {
    /// Lineage node uids of live threads.
    pub(crate) threads: HashSet<u64>,
    /// Kernel thread ids, for threads the lineage registry did not see being created.
    pub(crate) tids: HashSet<i32>,
    /// Ids of the current runtime's live tasks, where known (`--cfg tokio_unstable`).
    #[cfg_attr(any(not(tokio_unstable), not(feature = "tokio")), allow(dead_code))]
    pub(crate) tasks: HashSet<u64>,
    /// The current runtime's live task count, for builds without task ids.
    #[cfg_attr(not(feature = "tokio"), allow(dead_code))]
    pub(crate) task_count: Option<usize>,
    /// Pids of the process's child processes not reaped yet.
    pub(crate) children: HashSet<i32>,
}

impl Baseline {
    fn now() -> Baseline {
        Baseline {
            threads: lineage::all_live().iter().map(|node| node.uid).collect(),
            tids: sys::threads().unwrap_or_default().into_iter().collect(),
            #[cfg(feature = "tokio")]
            tasks: tasks::current_task_ids().into_iter().collect(),
            #[cfg(not(feature = "tokio"))]
            tasks: HashSet::new(),
            #[cfg(feature = "tokio")]
            task_count: tasks::current_task_count(),
            #[cfg(not(feature = "tokio"))]
            task_count: None,
            children: children::all().iter().map(|(child, _)| child.pid).collect(),
        }
    }
}
