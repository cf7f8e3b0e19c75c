//! Frames: one resolved function of a stack, and which frames are the user's.
//!
//! Reports fold library frames (std, tokio, futures, leakcheck, libc, the thread start-up code)
//! so that the user's code is what stands out: [`first_user_frame`] is the line to show. Plain
//! data and pure classification; symbolization itself is a probe (`probe::symbols`).

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// One resolved frame; an address with inlined calls becomes several, innermost first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Frame {
    /// Demangled name without the `::h<hash>` suffix (closures keep `{{closure}}`, or v0's
    /// `{closure#0}`) and with an inherent impl's type unbracketed as legacy writes it, or `0x…`
    /// for an address that could not be resolved: what reports show.
    pub(crate) function: String,
    /// The name as every name rule matches it, whichever mangling the build used: see
    /// [`match_key`].
    pub(crate) key: String,
    /// Source file as recorded in the debug info.
    pub(crate) file: Option<String>,
    pub(crate) line: Option<u32>,
    /// Whether the frame is plumbing (std, tokio, leakcheck, libc, ...) rather than user code.
    pub(crate) library: bool,
}

impl Frame {
    /// A frame from parts symbolized elsewhere (tokio's task dumps): drops a hash suffix from the
    /// name and classifies it like [`resolve`] does.
    pub(crate) fn new(function: String, file: Option<String>, line: Option<u32>) -> Frame {
        let function = unwrap_inherent(clean_name(strip_hash(&function)));
        let key = match_key(&function);
        // A bare name (no path: what `debug = "line-tables-only"` leaves an inlined function) is
        // shown without the generic arguments it then spells out in full.
        let function = if key.contains("::") { function } else { key.clone() };
        let library = is_library(&key, file.as_deref());
        Frame {
            function,
            key,
            file,
            line,
            library,
        }
    }
}

/// Crates whose frames are folded as library frames.
pub(crate) mod location;
mod names;

pub(crate) use location::{creation_chain, frame_text, short_location};
pub(crate) use names::{base_name, clean_name, match_key, strip_hash, unwrap_inherent};

const LIBRARY_CRATES: &[&str] = &[
    "std",
    "core",
    "alloc",
    "test",
    "proc_macro",
    "panic_unwind",
    "panic_abort",
    "unwind",
    "std_detect",
    "tokio",
    "mio",
    "futures",
    "backtrace",
    "addr2line",
    "gimli",
    "rustc_demangle",
    "libc",
    "leakcheck",
    "parking_lot",
    "parking_lot_core",
    "lock_api",
    // Plumbing, never where anything is stuck: with its `tracing` feature (which task names and
    // tokio-console need), tokio wraps every task and worker in `tracing::Instrumented`.
    "tracing",
    "tracing_core",
];

/// Crate name prefixes folded as library frames (`futures_util`, `tokio_util`, ...).
const LIBRARY_CRATE_PREFIXES: &[&str] = &["futures_", "tokio_", "crossbeam_"];

/// C-level symbols of thread start-up and the panic runtime (besides any `__`-prefixed name).
const SYSTEM_SYMBOLS: &[&str] = &[
    "start_thread",
    "clone",
    "clone3",
    "_start",
    // Windows' thread start-up (kernel32, ntdll).
    "BaseThreadInitThunk",
    "RtlUserThreadStart",
    "rust_begin_unwind",
    "rust_panic",
];

/// Path fragments of sources that are not the user's: the standard library (remapped to
/// `/rustc/<hash>/`, its dependencies to `/rust/deps/`), a rust-src checkout, cargo's registry
/// and git checkouts.
const DEPENDENCY_PATHS: &[&str] = &[
    "/rust/deps/",
    "/lib/rustlib/src/rust/",
    "/.cargo/registry/",
    "/.cargo/git/",
];

/// Where leakcheck's own sources live; `src/` there is library, `tests/` and `examples/` are not.
const OWN_ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// Whether `file` is one of leakcheck's own library sources (`src/`).
pub(crate) fn is_own_source(file: &str) -> bool {
    location::strip_root(file, OWN_ROOT).is_some_and(|relative| relative.split('/').next() == Some("src"))
}

/// The innermost frame that is not library code: where the user's code is stuck.
pub(crate) fn first_user_frame(frames: &[Frame]) -> Option<&Frame> {
    frames.iter().find(|frame| !frame.library)
}

/// The three tiers of frames a report tells apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Tier {
    /// The standard library, runtimes' internals, leakcheck, C start-up code: folded.
    Internal,
    /// A dependency crate (cargo's registry or a git checkout): shown at its boundary.
    Dependency,
    /// The user's code: highlighted.
    User,
}

/// A dependency crate as its source path names it: `scheduled-thread-pool 0.2.8`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Crate {
    pub(crate) name: String,
    /// The version (registry) or `git <rev>` (git checkout).
    pub(crate) version: String,
}

impl std::fmt::Display for Crate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.name, self.version)
    }
}

/// Which tier a frame belongs to: user code, a dependency crate that is not a runtime's internals,
/// or internal.
pub(crate) fn tier(frame: &Frame) -> Tier {
    if !frame.library {
        return Tier::User;
    }
    let source = dependency_crate(frame);
    // A bare name (an inlined function under `debug = "line-tables-only"`: `with_mut<..>`) has no
    // crate path; its source file's crate stands in for it.
    let internal_crate = match subject_crate(&frame.key) {
        Some(krate) => is_internal_crate(krate),
        None => source
            .as_ref()
            .is_some_and(|source| is_internal_crate(&source.name.replace('-', "_"))),
    };
    if !internal_crate && source.is_some() {
        Tier::Dependency
    } else {
        Tier::Internal
    }
}

/// Whether a crate's frames are internals (std, runtimes, leakcheck), folded in every report.
fn is_internal_crate(krate: &str) -> bool {
    LIBRARY_CRATES.contains(&krate)
        || krate.starts_with("__")
        || LIBRARY_CRATE_PREFIXES
            .iter()
            .any(|prefix| krate.starts_with(prefix))
}

/// The dependency crate a frame's source file belongs to, parsed from cargo's layout:
/// `.../registry/src/<index>/<crate>-<version>/...` or `.../git/checkouts/<crate>-<hash>/<rev>/...`.
pub(crate) fn dependency_crate(frame: &Frame) -> Option<Crate> {
    let file = frame.file.as_deref()?;
    if let Some(at) = file.find("/registry/src/") {
        let rest = &file[at + "/registry/src/".len()..];
        let dir = rest.split('/').nth(1)?;
        let (name, version) = split_version(dir)?;
        return Some(Crate {
            name: name.to_owned(),
            version: version.to_owned(),
        });
    }
    if let Some(at) = file.find("/git/checkouts/") {
        let mut parts = file[at + "/git/checkouts/".len()..].split('/');
        let dir = parts.next()?;
        let rev = parts.next()?;
        let name = dir.rsplit_once('-').map_or(dir, |(name, _hash)| name);
        return Some(Crate {
            name: name.to_owned(),
            version: format!("git {rev}"),
        });
    }
    None
}

/// `scheduled-thread-pool-0.2.8` → (`scheduled-thread-pool`, `0.2.8`): the version starts at the
/// first `-` followed by a digit.
fn split_version(dir: &str) -> Option<(&str, &str)> {
    let bytes = dir.as_bytes();
    let at = (1..bytes.len()).find(|&i| bytes[i - 1] == b'-' && bytes[i].is_ascii_digit())?;
    Some((&dir[..at - 1], &dir[at..]))
}

/// Where a stack is stuck: its innermost user frame, else its innermost dependency frame (the
/// boundary between a dependency and the internals it waits in), else its innermost frame from a
/// runtime or other non-std crate, else its innermost named frame.
pub(crate) fn stuck_frame(frames: &[Frame]) -> Option<&Frame> {
    first_user_frame(frames)
        .or_else(|| frames.iter().find(|frame| tier(frame) == Tier::Dependency))
        .or_else(|| {
            frames
                .iter()
                .find(|frame| RUNTIME_WAITS.iter().any(|wait| frame.key.starts_with(wait)))
        })
        .or_else(|| {
            frames.iter().find(|frame| {
                subject_crate(&frame.key).is_some_and(|krate| {
                    !STD_CRATES.contains(&krate) && !krate.starts_with("__") && krate != "leakcheck"
                })
            })
        })
}

/// Where a runtime's own thread waits for work: the frame that names a stack with no user or
/// dependency frame (deeper frames are the runtime's parking and IO driver, which vary).
const RUNTIME_WAITS: &[&str] = &[
    "tokio::runtime::scheduler::multi_thread::worker::Context::park",
    "tokio::runtime::scheduler::current_thread::Context::park",
    "tokio::runtime::blocking::pool::Inner::run",
    "rayon_core::registry::WorkerThread::wait_until",
];

/// The standard library's crates: never the frame a report names as stuck.
const STD_CRATES: &[&str] = &[
    "std",
    "core",
    "alloc",
    "test",
    "panic_unwind",
    "panic_abort",
    "unwind",
];

/// Whether a frame is library code, from its file when it tells, else from its crate; a symbol
/// without a crate path (C code) is library when it has no file.
fn is_library(function: &str, file: Option<&str>) -> bool {
    if let Some(file) = file {
        if is_dependency_file(file) {
            return true;
        }
        if is_own_source(file) {
            return !is_own_test(function);
        }
        // Where the code comes from, not its crate's name: `tests/test.rs` is a crate named
        // `test`, as is libtest.
        if in_package(file) {
            return false;
        }
    }
    match subject_crate(function) {
        Some("leakcheck") => !is_own_test(function),
        Some(krate) => {
            LIBRARY_CRATES.contains(&krate)
                || krate.starts_with("__") // `__rustc::rust_begin_unwind`
                || LIBRARY_CRATE_PREFIXES.iter().any(|prefix| krate.starts_with(prefix))
        }
        None => file.is_none() || function.starts_with("__") || SYSTEM_SYMBOLS.contains(&function),
    }
}

/// leakcheck's own unit tests (`leakcheck::probe::stack::tests::...`) are user code to leakcheck.
fn is_own_test(function: &str) -> bool {
    function.contains("::tests::")
}

fn is_dependency_file(file: &str) -> bool {
    static CARGO_HOME: OnceLock<Option<PathBuf>> = OnceLock::new();
    if file.starts_with("/rustc/") || DEPENDENCY_PATHS.iter().any(|fragment| file.contains(fragment)) {
        return true;
    }
    let cargo_home = CARGO_HOME.get_or_init(|| std::env::var_os("CARGO_HOME").map(PathBuf::from));
    cargo_home.as_ref().is_some_and(|home| {
        let file = Path::new(file);
        file.starts_with(home.join("registry")) || file.starts_with(home.join("git"))
    })
}

/// The crate a function belongs to: its path's first segment, or for `<Type as Trait>::f` the
/// type's crate (the trait's when the type has no path, as in `<&T as core::fmt::Debug>::fmt`).
pub(crate) fn subject_crate(function: &str) -> Option<&str> {
    let Some(qualified) = function.strip_prefix('<') else {
        return leading_crate(function);
    };
    let mut subject = qualified;
    for prefix in ["&", "mut ", "dyn ", "*const ", "*mut "] {
        while let Some(rest) = subject.strip_prefix(prefix) {
            subject = rest;
        }
    }
    leading_crate(subject).or_else(|| leading_crate(&qualified[qualified.find(" as ")? + 4..]))
}

/// `krate` in `krate::path`, if the text starts with a plain identifier followed by `::`.
fn leading_crate(path: &str) -> Option<&str> {
    let krate = &path[..path.find("::")?];
    let identifier = !krate.is_empty() && krate.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    identifier.then_some(krate)
}

/// Whether `file` is a source of the package being tested (or its workspace): under one of
/// [`roots`], outside a `target` directory (code a build script generated).
fn in_package(file: &str) -> bool {
    roots().iter().any(|root| {
        location::strip_root(file, &root.to_string_lossy())
            .is_some_and(|relative| !relative.is_empty() && relative.split('/').next() != Some("target"))
    })
}

/// Directories paths are shown relative to: current dir, package dir, workspace root.
fn roots() -> &'static [PathBuf] {
    static ROOTS: OnceLock<Vec<PathBuf>> = OnceLock::new();
    ROOTS.get_or_init(|| {
        let current = std::env::current_dir().ok();
        let package = std::env::var_os("CARGO_MANIFEST_DIR").map(PathBuf::from);
        let workspace = current
            .as_deref()
            .and_then(|dir| dir.ancestors().find(|dir| dir.join("Cargo.lock").is_file()))
            .map(Path::to_path_buf);
        let mut roots: Vec<PathBuf> = Vec::new();
        for root in [current, package, workspace].into_iter().flatten() {
            if !roots.contains(&root) {
                roots.push(root);
            }
        }
        roots
    })
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    pub(super) fn frame(function: &str, file: Option<&str>, line: Option<u32>) -> Frame {
        Frame::new(function.to_owned(), file.map(str::to_owned), line)
    }

    /// Library frames are recognized by file (std, registry, leakcheck's src) or by crate.
    #[test]
    fn classifies_frames() {
        let own_src = format!("{OWN_ROOT}/src/probe/stack.rs");
        let own_registry = format!("{OWN_ROOT}/src/probe/lineage/registry.rs");
        let own_test = format!("{OWN_ROOT}/tests/stack_capture_handler.rs");
        let package = std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| OWN_ROOT.into());
        let own_test_rs = format!("{package}/tests/test.rs");
        let library = [
            (
                "std::sys::pal::unix::futex::futex_wait",
                Some("/rustc/17067e9/library/std/src/sys/pal/unix/futex.rs"),
            ),
            ("std::thread::park", None),
            (
                "<alloc::boxed::Box<F,A> as core::ops::function::FnOnce<Args>>::call_once",
                None,
            ),
            ("<&mut I as core::iter::traits::iterator::Iterator>::next", None),
            ("<F as core::future::future::Future>::poll", None),
            (
                "tokio::runtime::park::Inner::park",
                Some("/home/u/.cargo/registry/src/index/tokio-1.47.0/src/runtime/park.rs"),
            ),
            ("futures_util::future::Map::poll", None),
            (
                "hashbrown::raw::RawTable::find",
                Some("/rust/deps/hashbrown-0.15.2/src/raw/mod.rs"),
            ),
            ("leakcheck::probe::stack::capture", Some(own_src.as_str())),
            ("leakcheck::probe::lineage::interpose::trampoline", None),
            (
                "leakcheck::probe::lineage::registry::register_child",
                Some(own_registry.as_str()),
            ),
            ("test::run_test::{closure#0}", None),
            (
                "__rustc::rust_begin_unwind",
                Some("/rustc/17067e9/library/std/src/panicking.rs"),
            ),
            ("__rust_begin_short_backtrace", None),
            ("rust_begin_unwind", None),
            ("start_thread", Some("./nptl/pthread_create.c")),
            (
                "__GI___clock_nanosleep",
                Some("../sysdeps/unix/sysv/linux/clock_nanosleep.c"),
            ),
            ("clone3", None),
            ("syscall", None),
            ("__futex_abstimed_wait_common", None),
            ("0x1234", None),
        ];
        for (function, file) in library {
            assert!(is_library(function, file), "{function} should be library");
        }
        let user = [
            ("mailbox::Mailbox::recv", Some("/work/app/src/mailbox.rs")),
            ("mailbox::Mailbox::recv", None),
            ("<mailbox::Worker as core::future::future::Future>::poll", None),
            ("mailbox::tests::leaks::{{closure}}", Some("/work/app/src/lib.rs")),
            (
                "leakcheck::probe::stack::tests::blocked_receiver",
                Some(own_src.as_str()),
            ),
            ("stack_capture_handler::main", Some(own_test.as_str())),
            ("my_c_helper", Some("/work/app/csrc/helper.c")),
            // `tests/test.rs` compiles to a crate named `test`, like libtest: its file tells.
            ("test::drops_on_broken::{{closure}}", Some(own_test_rs.as_str())),
        ];
        for (function, file) in user {
            assert!(!is_library(function, file), "{function} should be user code");
        }
    }

    /// A v0 name is classified as its legacy twin is: std's generic code instantiated in the
    /// user's crate is library, the user's inherent methods are not.
    #[test]
    fn classifies_v0_names() {
        let std_send = frame(
            "<std::sync::mpmc::zero::Channel<u32>>::send::{closure#0}",
            None,
            None,
        );
        assert!(std_send.library);
        assert_eq!(subject_crate(&std_send.key), Some("std"));
        let user = frame(
            "<app::Worker<u8>>::run::{closure#0}",
            Some("/work/app/src/lib.rs"),
            Some(3),
        );
        assert!(!user.library);
        assert_eq!(subject_crate(&user.key), Some("app"));
        // Shown as legacy writes an inherent method, with v0's concrete arguments and closures.
        assert_eq!(user.function, "app::Worker<u8>::run::{closure#0}");
        let boxed = "<alloc::boxed::Box<F> as core::ops::function::FnOnce<()>>::call_once";
        assert_eq!(frame(boxed, None, None).function, boxed);
    }

    /// `first_user_frame` skips library frames.
    #[test]
    fn first_user_frame_skips_library() {
        let frames = [
            frame("syscall", None, None),
            frame("std::thread::park", None, None),
            frame("app::worker", Some("/work/app/src/lib.rs"), Some(7)),
            frame("app::main", Some("/work/app/src/main.rs"), Some(2)),
        ];
        assert_eq!(first_user_frame(&frames).unwrap().function, "app::worker");
        assert_eq!(first_user_frame(&frames[..2]), None);
    }

    /// Dependency frames are told from internals by their source path and crate, with crate name
    /// and version parsed from cargo's layout; a stack of library code only is stuck at the
    /// dependency's boundary frame.
    #[test]
    fn dependency_tier_and_boundary() {
        let registry = "/home/u/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f";
        let pool = frame(
            "scheduled_thread_pool::Worker::get_job",
            Some(&format!("{registry}/scheduled-thread-pool-0.2.8/src/lib.rs")),
            Some(412),
        );
        let parking = frame(
            "parking_lot::condvar::Condvar::wait_until_internal",
            Some(&format!("{registry}/parking_lot-0.12.5/src/condvar.rs")),
            Some(300),
        );
        assert_eq!(tier(&pool), Tier::Dependency);
        assert_eq!(tier(&parking), Tier::Internal);
        let krate = dependency_crate(&pool).unwrap();
        assert_eq!(krate.to_string(), "scheduled-thread-pool 0.2.8");
        let git = frame(
            "dep::f",
            Some("/h/.cargo/git/checkouts/dep-0123abcd/5e6f7a8/src/lib.rs"),
            Some(3),
        );
        assert_eq!(dependency_crate(&git).unwrap().to_string(), "dep git 5e6f7a8");
        // A bare inlined name (`debug = "line-tables-only"`) from a runtime's source is internal.
        let bare = frame(
            "{closure#0}<parking_lot::raw_condvar::{impl#2}::wait_until_internal::{closure_env#0}>",
            Some(&format!("{registry}/parking_lot_core-0.9.10/src/parking_lot.rs")),
            Some(600),
        );
        assert_eq!(tier(&bare), Tier::Internal);
        assert_eq!(bare.function, "{{closure}}");
        let stack = [frame("syscall", None, None), bare, parking, pool.clone()];
        assert_eq!(stuck_frame(&stack), Some(&pool));
        assert_eq!(
            frame_text(&pool),
            "scheduled_thread_pool::Worker::get_job (scheduled-thread-pool 0.2.8) at src/lib.rs:412"
        );
    }
}
