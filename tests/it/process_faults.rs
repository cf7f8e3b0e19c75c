//! Everything a process does around thread creation (Linux): forks, failed creations, churn,
//! libraries loaded and unloaded, creation from a thread-local destructor and from a signal
//! handler's deferred work. Each row: the leak is found and named, and its clean twin passes.
#![cfg(all(target_os = "linux", target_env = "gnu", not(target_feature = "crt-static")))]

use std::ffi::{c_int, c_void, CString};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread;
use std::time::Duration;

use std::os::unix::thread::JoinHandleExt as _;

use leakcheck::Options;

/// A short settle: every leak here is parked for good, every clean case has joined already.
const SETTLE: Duration = Duration::from_millis(300);

/// A thread created and joined in the child of a fork is the child's own; a child that leaves a
/// thread running and exits is not the parent test's leak (it is waited for).
#[leakcheck::leak_test]
fn a_forked_child_that_leaves_a_thread_is_not_the_parents_leak() {
    // SAFETY: the child creates threads (glibc and leakcheck make that work in the child of a
    // multi-threaded process), then leaves with `_exit`.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        unsafe { libc::alarm(10) };
        thread::spawn(|| ()).join().unwrap();
        let (_keep, wait) = mpsc::channel::<()>();
        thread::spawn(move || wait.recv()); // left behind: it ends with the child
        unsafe { libc::_exit(0) };
    }
    let mut status = 0;
    // SAFETY: waits for the child just forked.
    assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "status {status}"
    );
}

/// A child forked and exec'd but never waited for is a leak of the test, named by its program.
#[test]
fn fork_then_exec_not_waited_is_a_leak() {
    let program = CString::new("/bin/sleep").unwrap();
    let argument = CString::new("30").unwrap();
    let argv = [program.as_ptr(), argument.as_ptr(), std::ptr::null()];
    // SAFETY: the child only calls `execv` (async-signal-safe) and `_exit`.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        unsafe {
            libc::execv(program.as_ptr(), argv.as_ptr());
            libc::_exit(127);
        }
    }
    let error = Options::new()
        .settle(SETTLE)
        .kill_children(false)
        .find()
        .expect_err("a running child that was never waited for");
    let report = error.to_string();
    assert!(report.contains("1 child process leaked"), "{report}");
    assert!(report.contains("sleep 30"), "{report}");
    // SAFETY: the child forked above.
    unsafe {
        libc::kill(pid, libc::SIGKILL);
        libc::waitpid(pid, std::ptr::null_mut(), 0);
    }
    Options::new().settle(SETTLE).verify_none();
}

/// A thread creation that fails registers nothing, and its error reaches the caller unchanged:
/// the same code the real `pthread_create` returns for the same impossible stack size.
#[leakcheck::leak_test]
fn failed_creation_registers_nothing() {
    extern "C" fn start(_: *mut c_void) -> *mut c_void {
        std::ptr::null_mut()
    }
    type Create = unsafe extern "C" fn(
        *mut libc::pthread_t,
        *const libc::pthread_attr_t,
        extern "C" fn(*mut c_void) -> *mut c_void,
        *mut c_void,
    ) -> c_int;
    let create = |create: Create| -> c_int {
        // SAFETY: a zeroed attribute initialized by `pthread_attr_init`, destroyed after use; a
        // stack size no machine can map.
        unsafe {
            let mut attr: libc::pthread_attr_t = std::mem::zeroed();
            assert_eq!(libc::pthread_attr_init(&mut attr), 0);
            assert_eq!(libc::pthread_attr_setstacksize(&mut attr, 1 << 62), 0);
            let mut thread: libc::pthread_t = 0;
            let result = create(&mut thread, &attr, start, std::ptr::null_mut());
            libc::pthread_attr_destroy(&mut attr);
            result
        }
    };
    // SAFETY: RTLD_NEXT from the executable finds libc's definition, after leakcheck's.
    let real = unsafe { libc::dlsym(libc::RTLD_NEXT, c"pthread_create".as_ptr()) };
    assert!(!real.is_null());
    // SAFETY: libc's `pthread_create`.
    let real: Create = unsafe { std::mem::transmute::<*mut c_void, Create>(real) };
    let expected = create(real);
    assert_ne!(expected, 0, "the real pthread_create refused the stack size");
    assert_eq!(create(libc::pthread_create), expected);
    let spawned = thread::Builder::new().stack_size(1 << 62).spawn(|| ());
    assert!(spawned.is_err(), "std reports the failure");
    Options::new()
        .settle(SETTLE)
        .find()
        .expect("a failed creation leaves no thread behind");
}

/// Ten thousand short threads, one of them left parked among them: exactly that one is found
/// and named, and the registry holds nothing else of the churn.
#[test]
fn churn_with_one_leak_among_ten_thousand() {
    let (release, wait) = mpsc::channel::<()>();
    let mut wait = Some(wait);
    for batch in 0..1250 {
        let handles: Vec<_> = (0..8)
            .map(|index| {
                let parked = (batch == 600 && index == 3).then(|| wait.take().unwrap());
                let name = if parked.is_some() { "the-one" } else { "churn" };
                thread::Builder::new()
                    .name(name.into())
                    .stack_size(64 * 1024)
                    .spawn(move || {
                        if let Some(wait) = parked {
                            let _ = wait.recv();
                        }
                    })
                    .unwrap()
            })
            .collect();
        for handle in handles {
            if handle.thread().name() != Some("the-one") {
                handle.join().unwrap();
            }
        }
    }
    let error = Options::new()
        .settle(SETTLE)
        .find()
        .expect_err("one parked thread");
    assert_eq!(error.threads(), 1, "{error}");
    assert!(error.to_string().contains("thread \"the-one\""), "{error}");
    release.send(()).unwrap();
    Options::new().settle(Duration::from_secs(10)).verify_none();
}

const WORKER_C: &str = r#"
#include <pthread.h>
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t released_cond = PTHREAD_COND_INITIALIZER;
static int released;
static pthread_t worker;
static void *run(void *arg) {
    pthread_mutex_lock(&lock);
    while (!released) pthread_cond_wait(&released_cond, &lock);
    pthread_mutex_unlock(&lock);
    return arg;
}
int start_worker(void) { released = 0; return pthread_create(&worker, 0, run, 0); }
void stop_worker(void) {
    pthread_mutex_lock(&lock);
    released = 1;
    pthread_cond_broadcast(&released_cond);
    pthread_mutex_unlock(&lock);
    pthread_join(worker, 0);
}
"#;

/// Compiles [`WORKER_C`] into a shared library; `None` where there is no C compiler.
fn build_worker_library() -> Option<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!("leakcheck-dl-{}", std::process::id()));
    std::fs::create_dir_all(&dir).ok()?;
    let source = dir.join("worker.c");
    let library = dir.join("libworker.so");
    std::fs::write(&source, WORKER_C).ok()?;
    let built = std::process::Command::new("cc")
        .args(["-shared", "-fPIC", "-g", "-o"])
        .arg(&library)
        .arg(&source)
        .arg("-lpthread")
        .status()
        .ok()?;
    built.success().then_some(library)
}

/// A library loaded with `dlopen` creates a thread: the thread is the test's (found, created at
/// the library's function called from this test); once stopped and the library unloaded, the
/// check is clean, and threads created afterwards are still attributed.
#[test]
fn dlopen_dlclose_of_a_library_that_creates_a_thread() {
    let Some(library) = build_worker_library() else {
        eprintln!("no C compiler: the dlopen row is not run");
        return;
    };
    let path = CString::new(library.to_str().unwrap()).unwrap();
    for round in 0..2 {
        // SAFETY: a library built above, whose two functions have these signatures.
        unsafe {
            let handle = libc::dlopen(path.as_ptr(), libc::RTLD_NOW);
            assert!(!handle.is_null(), "dlopen");
            let start: extern "C" fn() -> c_int =
                std::mem::transmute(libc::dlsym(handle, c"start_worker".as_ptr()));
            let stop: extern "C" fn() = std::mem::transmute(libc::dlsym(handle, c"stop_worker".as_ptr()));
            assert_eq!(start(), 0);
            let error = Options::new()
                .settle(SETTLE)
                .find()
                .expect_err("the library's thread");
            assert_eq!(error.threads(), 1, "round {round}: {error}");
            // The library's C frames are folded as library code; the thread is the test's, and
            // no line of the report names leakcheck's own code as where it is stuck.
            let report = error.to_string();
            assert!(
                report.contains("created at tests/it/process_faults.rs"),
                "round {round}: {report}"
            );
            assert!(
                !report.contains("stuck in   leakcheck::"),
                "round {round}: {report}"
            );
            stop();
            Options::new().settle(SETTLE).verify_none();
            assert_eq!(libc::dlclose(handle), 0);
        }
        let (release, wait) = mpsc::channel::<()>();
        let after = thread::Builder::new()
            .name("after-dlclose".into())
            .spawn(move || wait.recv())
            .unwrap();
        let error = Options::new()
            .settle(SETTLE)
            .find()
            .expect_err("a thread after dlclose");
        assert!(
            error
                .to_string()
                .contains("created at tests/it/process_faults.rs"),
            "{error}"
        );
        release.send(()).unwrap();
        after.join().unwrap().unwrap();
    }
    let _ = std::fs::remove_dir_all(library.parent().unwrap());
}

/// A thread-local whose destructor starts a thread: held by `HELD` until released when `leak`,
/// joined at once otherwise.
struct SpawnsOnDrop {
    leak: bool,
}

static HELD: Mutex<Option<mpsc::Sender<()>>> = Mutex::new(None);

impl Drop for SpawnsOnDrop {
    fn drop(&mut self) {
        let (release, wait) = mpsc::channel::<()>();
        let started = thread::Builder::new()
            .name("from-tls-dtor".into())
            .spawn(move || {
                let _ = wait.recv();
            })
            .unwrap();
        if self.leak {
            *HELD.lock().unwrap() = Some(release);
        } else {
            drop(release);
            started.join().unwrap();
        }
    }
}

thread_local! {
    static SPAWNS: std::cell::RefCell<Option<SpawnsOnDrop>> = const { std::cell::RefCell::new(None) };
}

/// A thread created from a thread-local destructor of a thread the test started is the test's:
/// found when left running, clean when joined.
#[test]
fn creation_from_a_tls_destructor() {
    for leak in [false, true] {
        thread::spawn(move || SPAWNS.with(|slot| *slot.borrow_mut() = Some(SpawnsOnDrop { leak })))
            .join()
            .unwrap();
        let found = Options::new().settle(SETTLE).find();
        if leak {
            let error = found.expect_err("the destructor's thread is alive");
            assert_eq!(error.threads(), 1, "{error}");
            assert!(error.to_string().contains("thread \"from-tls-dtor\""), "{error}");
            drop(HELD.lock().unwrap().take());
            Options::new().settle(Duration::from_secs(10)).verify_none();
        } else {
            found.expect("the destructor joined its thread");
        }
    }
}

static SIGNALLED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_usr2(_: c_int) {
    SIGNALLED.store(true, Ordering::SeqCst);
}

/// Work deferred by a signal handler (the handler sets a flag; a watcher thread the test started
/// sees it and starts a thread) is the test's: found while parked, clean once released.
#[test]
fn creation_from_a_signal_handlers_deferred_work() {
    // SAFETY: the handler only stores to an atomic.
    unsafe {
        libc::signal(
            libc::SIGUSR2,
            on_usr2 as extern "C" fn(c_int) as libc::sighandler_t,
        )
    };
    let (release, wait) = mpsc::channel::<()>();
    let (started, is_started) = mpsc::channel::<()>();
    let stop = Arc::new(AtomicBool::new(false));
    let watcher = {
        let stop = stop.clone();
        thread::spawn(move || {
            let mut wait = Some(wait);
            while !stop.load(Ordering::SeqCst) {
                if SIGNALLED.swap(false, Ordering::SeqCst) {
                    let wait = wait.take().unwrap();
                    thread::Builder::new()
                        .name("deferred".into())
                        .spawn(move || wait.recv())
                        .unwrap();
                    started.send(()).unwrap();
                }
                thread::sleep(Duration::from_millis(5));
            }
        })
    };
    // SAFETY: sends a signal to the watcher thread of this process.
    unsafe { libc::pthread_kill(watcher.as_pthread_t(), libc::SIGUSR2) };
    is_started.recv_timeout(Duration::from_secs(30)).unwrap();
    stop.store(true, Ordering::SeqCst);
    watcher.join().unwrap();
    let error = Options::new()
        .settle(SETTLE)
        .find()
        .expect_err("the deferred thread");
    assert_eq!(error.threads(), 1, "{error}");
    assert!(error.to_string().contains("thread \"deferred\""), "{error}");
    release.send(()).unwrap();
    Options::new().settle(Duration::from_secs(10)).verify_none();
}
