//! Thread leaks: each classic leak is caught (with its stuck function, creation site and hint in
//! the report), and each fix passes.

use crate::common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, Sender, SyncSender, TryRecvError};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::Duration;

use common::LEAK_SETTLE;
use leakcheck::{leak_test, LeakError, Options};

fn find_leak() -> LeakError {
    Options::new()
        .settle(LEAK_SETTLE)
        .find()
        .expect_err("the leak must be caught")
}

fn assert_report(error: &LeakError, threads: usize, stuck_in: &str, cause: &str) {
    let report = error.to_string();
    assert_eq!(error.threads(), threads, "{report}");
    assert!(
        report.contains(&format!(
            "stuck in   it::threads::{stuck_in} at tests/it/threads.rs:"
        )),
        "{report}"
    );
    assert!(report.contains("created at tests/it/threads.rs:"), "{report}");
    assert!(report.contains(&format!("cause: {cause}")), "{report}");
}

#[inline(never)]
fn reply_worker_send(replies: SyncSender<u32>) {
    let _ = replies.send(42);
}

/// A worker blocked sending on a rendezvous channel whose receiver is kept but never read.
#[test]
fn blocked_send_on_rendezvous_channel_is_caught() {
    let (replies, inbox) = mpsc::sync_channel::<u32>(0);
    let worker = thread::Builder::new()
        .name("reply-worker".into())
        .spawn(move || reply_worker_send(replies))
        .unwrap();
    let error = find_leak();
    assert_report(&error, 1, "reply_worker_send", "blocked sending");
    assert!(error.to_string().contains("\"reply-worker\""), "{error}");
    drop(inbox); // release: the send fails and the worker returns
    worker.join().unwrap();
}

#[inline(never)]
fn listen(events: Receiver<String>) {
    for _event in events {}
}

/// A listener blocked receiving while its sender sits in a registry that is never closed.
#[test]
fn listener_with_sender_in_registry_is_caught() {
    let registry: Mutex<Vec<Sender<String>>> = Mutex::new(Vec::new());
    let (events, inbox) = mpsc::channel();
    registry.lock().unwrap().push(events);
    let listener = thread::spawn(move || listen(inbox));
    let error = find_leak();
    assert_report(&error, 1, "listen", "blocked receiving");
    registry.lock().unwrap().clear(); // release: the last sender goes
    listener.join().unwrap();
}

type Reply = Arc<(Mutex<Option<u32>>, Condvar)>;

#[inline(never)]
fn await_external_reply(reply: Reply) -> u32 {
    let (slot, arrived) = &*reply;
    let mut slot = slot.lock().unwrap();
    while slot.is_none() {
        slot = arrived.wait(slot).unwrap();
    }
    slot.unwrap()
}

/// A per-request worker waiting forever on a condvar for an external call.
#[test]
fn request_worker_waiting_on_condvar_is_caught() {
    let reply: Reply = Arc::new((Mutex::new(None), Condvar::new()));
    let worker = {
        let reply = reply.clone();
        thread::spawn(move || await_external_reply(reply))
    };
    let error = find_leak();
    assert_report(
        &error,
        1,
        "await_external_reply",
        "waiting on a condition variable",
    );
    *reply.0.lock().unwrap() = Some(7); // release: the call answers
    reply.1.notify_all();
    assert_eq!(worker.join().unwrap(), 7);
}

#[inline(never)]
fn poll_forever(updates: Receiver<u32>, cleanup: Arc<AtomicBool>) {
    loop {
        match updates.try_recv() {
            Ok(_) | Err(TryRecvError::Empty) | Err(TryRecvError::Disconnected) => {}
        }
        if cleanup.load(Ordering::Relaxed) {
            return; // only the test's own clean-up stops it
        }
        thread::sleep(Duration::from_millis(5));
    }
}

/// A polling loop that ignores its closed channel and never stops.
#[test]
fn polling_loop_ignoring_closed_channel_is_caught() {
    let (updates, inbox) = mpsc::channel::<u32>();
    drop(updates);
    let cleanup = Arc::new(AtomicBool::new(false));
    let poller = {
        let cleanup = cleanup.clone();
        thread::spawn(move || poll_forever(inbox, cleanup))
    };
    let error = find_leak();
    assert_eq!(error.threads(), 1, "{error}");
    assert!(error.to_string().contains("poll_forever"), "{error}");
    cleanup.store(true, Ordering::Relaxed);
    poller.join().unwrap();
}

/// Threads started by threads the test started are the test's too.
#[test]
fn grandchildren_are_caught() {
    let (release, blocked) = mpsc::channel::<()>();
    let parent = thread::spawn(move || {
        thread::spawn(move || {
            let _ = blocked.recv();
        })
    });
    let grandchild = parent.join().unwrap();
    let error = find_leak();
    assert_eq!(error.threads(), 1, "{error}");
    drop(release);
    grandchild.join().unwrap();
}

/// Closing the jobs channel lets the worker exit; joining it leaves nothing behind.
#[leak_test]
fn closing_the_jobs_channel_and_joining_passes() {
    let (jobs, inbox) = mpsc::channel::<u32>();
    let worker = thread::spawn(move || inbox.iter().sum::<u32>());
    for job in 1..=3 {
        jobs.send(job).unwrap();
    }
    drop(jobs);
    assert_eq!(worker.join().unwrap(), 6);
}

/// A buffered send completes at once, so the thread exits even though nobody joins it.
#[leak_test]
fn buffered_send_from_unjoined_thread_passes() {
    let (reply, inbox) = mpsc::sync_channel::<u32>(1);
    thread::spawn(move || reply.send(1).unwrap());
    drop(inbox);
}

/// A stop flag checked by the loop, then a join.
#[leak_test]
fn stop_flag_and_join_passes() {
    let stop = Arc::new(AtomicBool::new(false));
    let poller = {
        let stop = stop.clone();
        thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                thread::sleep(Duration::from_millis(2));
            }
        })
    };
    thread::sleep(Duration::from_millis(10));
    stop.store(true, Ordering::Relaxed);
    poller.join().unwrap();
}

/// Scoped threads are joined when the scope ends.
#[leak_test]
fn scoped_threads_pass() {
    let mut counts = [0u32; 4];
    thread::scope(|scope| {
        for (i, count) in counts.iter_mut().enumerate() {
            scope.spawn(move || *count = i as u32 * 2);
        }
    });
    assert_eq!(counts, [0, 2, 4, 6]);
}

/// A worker pool whose stop closes the queue and joins every worker.
#[leak_test]
fn worker_pool_stopped_by_closing_its_queue_passes() {
    let (queue, inbox) = mpsc::channel::<u32>();
    let inbox = Arc::new(Mutex::new(inbox));
    let done = Arc::new(Mutex::new(0u32));
    let workers: Vec<_> = (0..4)
        .map(|i| {
            let inbox = inbox.clone();
            let done = done.clone();
            thread::Builder::new()
                .name(format!("pool-{i}"))
                .spawn(move || loop {
                    let job = inbox.lock().unwrap().recv();
                    match job {
                        Ok(job) => *done.lock().unwrap() += job,
                        Err(_) => return,
                    }
                })
                .unwrap()
        })
        .collect();
    for job in 0..20 {
        queue.send(job).unwrap();
    }
    drop(queue);
    for worker in workers {
        worker.join().unwrap();
    }
    assert_eq!(*done.lock().unwrap(), 190);
}

/// A thread that exits by itself 150 ms after the body is given time to finish.
#[leak_test]
fn thread_finishing_after_the_body_passes() {
    thread::spawn(|| thread::sleep(Duration::from_millis(150)));
}

/// `verify_none()` in a plain `#[test]` passes once the thread is joined.
#[test]
fn verify_none_in_plain_test_passes_after_join() {
    let worker = thread::spawn(|| thread::sleep(Duration::from_millis(20)));
    worker.join().unwrap();
    leakcheck::verify_none();
}

/// `verify_none()` in a plain `#[test]` fails on a blocked thread, with the report as the panic.
#[test]
fn verify_none_in_plain_test_fails_on_blocked_thread() {
    let (release, blocked) = mpsc::channel::<()>();
    let worker = thread::spawn(move || {
        let _ = blocked.recv();
    });
    let options = Options::new().settle(LEAK_SETTLE);
    let panic = std::panic::catch_unwind(|| options.verify_none()).expect_err("must panic");
    let message = panic.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(
        message.starts_with(
            "leakcheck: 1 thread leaked by `threads::verify_none_in_plain_test_fails_on_blocked_thread`"
        ),
        "{message}"
    );
    drop(release);
    worker.join().unwrap();
}

/// A clean check does not wait for the settle deadline.
#[test]
fn clean_check_does_not_wait() {
    let started = std::time::Instant::now();
    Options::new().settle(Duration::from_secs(30)).verify_none();
    assert!(started.elapsed() < Duration::from_secs(10));
}

/// `#[leak_test]` composes with `Result` returns.
#[leak_test]
fn result_return_composes() -> Result<(), std::num::ParseIntError> {
    let value: u32 = "42".parse()?;
    assert_eq!(value, 42);
    Ok(())
}

/// `#[leak_test]` composes with `#[should_panic]`: the original panic is what the test reports.
#[leak_test]
#[should_panic(expected = "the original panic")]
fn should_panic_composes() {
    panic!("the original panic");
}

// Linux only: the raw call is `pthread_create`, which the interposer sees there.
#[cfg(target_os = "linux")]
extern "C" fn c_thread_main(arg: *mut std::ffi::c_void) -> *mut std::ffi::c_void {
    // SAFETY: `arg` is the pipe's read end, owned by this test for the thread's lifetime.
    let fd = arg as usize as libc::c_int;
    let mut byte = 0u8;
    // SAFETY: reading one byte into a valid buffer; blocks until the test writes or closes.
    unsafe { libc::read(fd, (&mut byte as *mut u8).cast(), 1) };
    std::ptr::null_mut()
}

/// A thread created by a raw `pthread_create` call (as C code would) is owned and caught too:
/// the interposer sees every `pthread_create` call, not just std's (threads started without it,
/// by a raw `clone` or inside libc, are covered by `tests/binary_untracked.rs`).
#[test]
#[cfg(target_os = "linux")] // the `pthread_create` interposer is Linux's
fn raw_pthread_create_is_caught() {
    let mut fds = [0; 2];
    // SAFETY: a valid two-element array for pipe(2).
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    // SAFETY: `pthread_t` is an integer (glibc) or a pointer (musl): zero is a valid value.
    let mut thread: libc::pthread_t = unsafe { std::mem::zeroed() };
    // SAFETY: valid out-pointer, default attributes, a C start routine and its argument.
    let created = unsafe {
        libc::pthread_create(
            &mut thread,
            std::ptr::null(),
            c_thread_main,
            fds[0] as usize as *mut _,
        )
    };
    assert_eq!(created, 0);
    let error = find_leak();
    assert_eq!(error.threads(), 1, "{error}");
    assert!(
        error.to_string().contains("it::threads::c_thread_main"),
        "{error}"
    );
    // SAFETY: closing our write end ends the thread's read; then join it and close the rest.
    unsafe {
        libc::close(fds[1]);
        libc::pthread_join(thread, std::ptr::null_mut());
        libc::close(fds[0]);
    }
}

/// One thread per kind of wait that Windows reads from where a suspended thread stands, each
/// released by the test; `wait_threads` starts them, `release` ends them.
#[cfg(windows)]
struct WaitThreads {
    keep: Vec<Sender<()>>,
    stop: Arc<AtomicBool>,
    address: std::net::SocketAddr,
    threads: Vec<thread::JoinHandle<()>>,
}

#[cfg(windows)]
fn wait_threads() -> WaitThreads {
    let spawn = |name: &str, body: Box<dyn FnOnce() + Send>| {
        thread::Builder::new().name(name.into()).spawn(body).unwrap()
    };
    let stop = Arc::new(AtomicBool::new(false));
    let (untimed, wait) = mpsc::channel::<()>();
    let mut threads = vec![spawn(
        "untimed",
        Box::new(move || {
            let _ = wait.recv();
        }),
    )];
    let (timed, wait) = mpsc::channel::<()>();
    threads.push(spawn(
        "timed",
        Box::new(move || {
            while let Err(mpsc::RecvTimeoutError::Timeout) = wait.recv_timeout(Duration::from_secs(60)) {}
        }),
    ));
    let flag = stop.clone();
    threads.push(spawn(
        "sleeper",
        Box::new(move || {
            // Long sleeps: the loop's few instructions between them are seldom what a look
            // catches.
            while !flag.load(Ordering::Relaxed) {
                thread::sleep(Duration::from_millis(100));
            }
        }),
    ));
    let flag = stop.clone();
    threads.push(spawn(
        "spinner",
        Box::new(move || {
            while !flag.load(Ordering::Relaxed) {
                std::hint::spin_loop();
            }
        }),
    ));
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    threads.push(spawn(
        "acceptor",
        Box::new(move || {
            let _ = listener.accept();
        }),
    ));
    WaitThreads {
        keep: vec![untimed, timed],
        stop,
        address,
        threads,
    }
}

#[cfg(windows)]
impl WaitThreads {
    fn release(self) {
        drop(self.keep);
        self.stop.store(true, Ordering::Relaxed);
        let _ = std::net::TcpStream::connect(self.address).unwrap();
        for thread in self.threads {
            thread.join().unwrap();
        }
    }
}

/// Windows: each leaked thread's first line says how it waits, read from where it was suspended
/// (the ntdll wait call and its timeout, a waitable timer for std's sleep, the socket call above
/// it), and the cause follows from it as on Linux (a timed wait wakes by itself).
#[test]
#[cfg(windows)]
fn windows_waits_are_read_from_where_threads_stand() {
    let waits = wait_threads();
    let error = find_leak();
    let report = error.to_string();
    let line = |name: &str| crate::common::header_line(&report, name);
    assert_eq!(error.threads(), 5, "{report}");
    assert!(
        line("untimed").ends_with(", untimed wait (NtWaitForAlertByThreadId with no timeout)"),
        "{report}"
    );
    assert!(
        line("timed").ends_with(", timed wait (NtWaitForAlertByThreadId with a timeout)"),
        "{report}"
    );
    assert!(
        report.contains("cause: a timed wait: it wakes by itself"),
        "{report}"
    );
    assert!(
        line("sleeper").ends_with(", sleeping in NtWaitForMultipleObjects on a timer"),
        "{report}"
    );
    assert!(
        report.contains("cause: sleeping in a loop with no stop signal"),
        "{report}"
    );
    assert!(line("spinner").ends_with(", running"), "{report}");
    assert!(
        line("acceptor").ends_with(", blocked in IO (accept())"),
        "{report}"
    );
    // Each block names the frame it is stuck in: the test's own closure.
    for name in ["untimed", "timed", "sleeper", "spinner", "acceptor"] {
        let block: Vec<&str> = report
            .lines()
            .skip_while(|line| !line.contains(&format!("\"{name}\"")))
            .take_while(|line| !line.is_empty())
            .collect();
        assert!(
            block.iter().any(|line| line
                .starts_with("   stuck in   it::threads::wait_threads::{{closure}} at tests/it/threads.rs:")),
            "{name}: {report}"
        );
    }
    waits.release();
}

/// Windows: the same threads, released and joined, leave nothing behind.
#[test]
#[cfg(windows)]
fn windows_waits_released_and_joined_pass() {
    let waits = wait_threads();
    thread::sleep(Duration::from_millis(20));
    waits.release();
    Options::new()
        .settle(LEAK_SETTLE)
        .find()
        .expect("joined threads are no leak");
}

/// Windows: `dump()` shows a blocked thread where it is stuck, and its own thread's stack too
/// (walked directly: a thread never suspends itself, which would hang it).
#[test]
#[cfg(windows)]
fn windows_dump_shows_stacks_and_waits() {
    let (release, blocked) = mpsc::channel::<()>();
    let (started, ready) = mpsc::channel::<()>();
    let worker = thread::Builder::new()
        .name("dumped".into())
        .spawn(move || {
            started.send(()).unwrap();
            listen_once(blocked);
        })
        .unwrap();
    ready.recv().unwrap();
    thread::sleep(Duration::from_millis(50));
    let dump = leakcheck::dump();
    let text = dump.to_string();
    let dumped = dump
        .threads()
        .find(|thread| thread.name() == Some("dumped"))
        .unwrap_or_else(|| panic!("{text}"));
    assert_eq!(dumped.stuck_in(), Some("it::threads::listen_once"), "{text}");
    let own = dump
        .threads()
        .find(|thread| thread.name() == Some("threads::windows_dump_shows_stacks_and_waits"))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(
        own.stack()
            .any(|function| function == "it::threads::windows_dump_shows_stacks_and_waits"),
        "{text}"
    );
    drop(release);
    worker.join().unwrap();
}

#[cfg(windows)]
#[inline(never)]
fn listen_once(blocked: Receiver<()>) {
    let _ = blocked.recv();
}

/// Recurses `depth` times with 4 KiB in each frame, then blocks on `wait`.
#[cfg(windows)]
#[inline(never)]
fn deep_then_block(depth: usize, wait: &Receiver<()>) -> u8 {
    let frame = std::hint::black_box([depth as u8; 4096]);
    if depth == 0 {
        let _ = wait.recv();
        return frame[0];
    }
    deep_then_block(depth - 1, wait).wrapping_add(frame[1])
}

/// Windows: a deep stack (400 recursive frames) is captured from its innermost frame, where the
/// thread is stuck, and the walk is bounded (at most 256 frames).
#[test]
#[cfg(windows)]
fn windows_deep_stack_is_captured_innermost_first() {
    let (release, wait) = mpsc::channel::<()>();
    let worker = thread::Builder::new()
        .name("deep".into())
        .stack_size(8 << 20)
        .spawn(move || {
            deep_then_block(400, &wait);
        })
        .unwrap();
    let error = find_leak();
    let report = error.to_string();
    assert!(
        report.contains("stuck in   it::threads::deep_then_block at tests/it/threads.rs:"),
        "{report}"
    );
    let frames = report.matches("it::threads::deep_then_block at").count();
    assert!((50..400).contains(&frames), "{frames} frames: {report}");
    drop(release);
    worker.join().unwrap();
}

/// Windows: a thread that ends through `ExitThread`, never returning from its start routine, is
/// not a leak once it has ended (the hook unregisters it from a fiber-local storage callback); its
/// twin, the same thread still blocked before `ExitThread`, is one.
#[test]
#[cfg(windows)]
fn windows_thread_ended_by_exit_thread_is_not_a_leak() {
    let (release, wait) = mpsc::channel::<()>();
    let worker = thread::Builder::new()
        .name("exits".into())
        .spawn(move || {
            let _ = wait.recv();
            // SAFETY: ends this thread; nothing of it is used afterwards (the test waits on
            // the thread's handle, never `join`s it).
            unsafe { windows_sys::Win32::System::Threading::ExitThread(0) };
        })
        .unwrap();
    assert_eq!(find_leak().threads(), 1);
    drop(release);
    // std's `join` would panic ("threads should not terminate unexpectedly"): wait on the handle.
    use std::os::windows::io::AsRawHandle;
    // SAFETY: the thread's handle, open while `worker` lives.
    let waited =
        unsafe { windows_sys::Win32::System::Threading::WaitForSingleObject(worker.as_raw_handle(), 10_000) };
    assert_eq!(waited, 0, "the thread did not end");
    drop(worker);
    let clean = Options::new().settle(LEAK_SETTLE).find();
    assert!(clean.is_ok(), "{}", clean.unwrap_err());
}
