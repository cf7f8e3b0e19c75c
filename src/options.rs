//! [`Options`]: what a check ignores and how long it waits.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use crate::probe::{lineage, procfs, tasks};
use crate::rules::Rule;

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
    pub(crate) builtin_rules: bool,
    pub(crate) capture_stacks: Option<bool>,
    pub(crate) full_stacks: Option<bool>,
    pub(crate) verbose: Option<bool>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            settle: None,
            rules: Vec::new(),
            baseline: None,
            builtin_rules: true,
            capture_stacks: None,
            full_stacks: None,
            verbose: None,
        }
    }
}

impl Options {
    /// Options with the defaults: settle deadline from `LEAKCHECK_SETTLE` (else 2 s), no ignore
    /// rules but the built-in ones, folded stacks.
    ///
    /// # Examples
    ///
    /// ```
    /// leakcheck::Options::new().verify_none();
    /// ```
    pub fn new() -> Self {
        Self::default()
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
    pub fn ignore_thread(mut self, pattern: &str) -> Self {
        self.rules.push(Rule::ThreadName(pattern.into()));
        self
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
    pub fn ignore_top_function(mut self, function: &str) -> Self {
        self.rules.push(Rule::TopFunction(function.into()));
        self
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
    pub fn ignore_any_function(mut self, function: &str) -> Self {
        self.rules.push(Rule::AnyFunction(function.into()));
        self
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
    pub fn ignore_creator(mut self, creator: &str) -> Self {
        self.rules.push(Rule::Creator(creator.into()));
        self
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
    pub fn ignore_spawn_site(mut self, site: &str) -> Self {
        self.rules.push(Rule::SpawnSite(site.into()));
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

    /// Turns the built-in ignore rules on (the default) or off; see the README for the list.
    ///
    /// # Examples
    ///
    /// ```
    /// let options = leakcheck::Options::new().builtin_rules(false);
    /// # options.verify_none();
    /// ```
    pub fn builtin_rules(mut self, on: bool) -> Self {
        self.builtin_rules = on;
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
}

/// Everything alive when [`Options::ignore_current`] was called.
#[derive(Debug, Default)]
pub(crate) struct Baseline {
    /// Lineage node uids of live threads.
    pub(crate) threads: HashSet<u64>,
    /// Kernel thread ids, for threads the lineage registry did not see being created.
    pub(crate) tids: HashSet<i32>,
    /// Ids of the current runtime's live tasks, where known (`--cfg tokio_unstable`).
    #[cfg_attr(not(tokio_unstable), allow(dead_code))]
    pub(crate) tasks: HashSet<u64>,
    /// The current runtime's live task count, for builds without task ids.
    pub(crate) task_count: Option<usize>,
}

impl Baseline {
    fn now() -> Baseline {
        Baseline {
            threads: lineage::all_live().iter().map(|node| node.uid).collect(),
            tids: procfs::process_tids().into_iter().collect(),
            tasks: tasks::current_task_ids().into_iter().collect(),
            task_count: tasks::current_task_count(),
        }
    }
}
