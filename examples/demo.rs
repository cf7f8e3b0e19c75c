//! leakcheck catching real leaks: each scenario runs on its own named thread (as libtest runs a
//! test), leaks the way real code does, and prints the report leakcheck gives for it. Then the
//! scenario releases what it leaked, and the same check passes.
//!
//! Run it with `cargo run --example demo`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, Sender, SyncSender, TryRecvError};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::Duration;

use leakcheck::Options;

const SETTLE: Duration = Duration::from_millis(300);

/// Runs `scenario` as a "test" on a thread named `name`; it leaks, is checked, then cleans up.
fn scenario(name: &str, body: impl FnOnce(&dyn Fn()) + Send + 'static) {
    thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            body(&|| match Options::new().settle(SETTLE).find() {
                Ok(()) => println!("(no leak found)\n"),
                Err(report) => println!("{report}"),
            });
            match Options::new().settle(Duration::from_secs(2)).find() {
                Ok(()) => println!("after the fix: no leak\n{}\n", "-".repeat(100)),
                Err(report) => println!("still leaking after clean-up:\n{report}"),
            }
        })
        .unwrap()
        .join()
        .unwrap();
}

#[inline(never)]
fn reply_worker_send(replies: SyncSender<u32>) {
    let _ = replies.send(42);
}

#[inline(never)]
fn listen(events: Receiver<String>) {
    for _event in events {}
}

#[inline(never)]
fn await_external_reply(reply: Arc<(Mutex<Option<u32>>, Condvar)>) {
    let (slot, arrived) = &*reply;
    let mut slot = slot.lock().unwrap();
    while slot.is_none() {
        slot = arrived.wait(slot).unwrap();
    }
}

#[inline(never)]
fn poll_forever(updates: Receiver<u32>, cleanup: Arc<AtomicBool>) {
    while !cleanup.load(Ordering::Relaxed) {
        let _ = matches!(updates.try_recv(), Err(TryRecvError::Disconnected)); // ignored
        thread::sleep(Duration::from_millis(5));
    }
}

fn main() {
    println!("leakcheck demo: four classic thread leaks and one task leak, each reported, then fixed\n");

    scenario("mailbox::replies_are_sent", |check| {
        let (replies, inbox) = mpsc::sync_channel::<u32>(0);
        let workers: Vec<_> = (0..3)
            .map(|_| {
                let replies = replies.clone();
                thread::Builder::new()
                    .name("reply-worker".into())
                    .spawn(move || reply_worker_send(replies))
                    .unwrap()
            })
            .collect();
        check();
        drop(inbox);
        workers.into_iter().for_each(|w| w.join().unwrap());
    });

    scenario("events::listener_registered", |check| {
        let registry: Mutex<Vec<Sender<String>>> = Mutex::new(Vec::new());
        let (events, inbox) = mpsc::channel();
        registry.lock().unwrap().push(events);
        let listener = thread::Builder::new()
            .name("listener".into())
            .spawn(move || listen(inbox))
            .unwrap();
        check();
        registry.lock().unwrap().clear();
        listener.join().unwrap();
    });

    scenario("requests::external_call", |check| {
        let reply = Arc::new((Mutex::new(None), Condvar::new()));
        let worker = {
            let reply = reply.clone();
            thread::spawn(move || await_external_reply(reply))
        };
        check();
        *reply.0.lock().unwrap() = Some(1);
        reply.1.notify_all();
        worker.join().unwrap();
    });

    scenario("poller::ignores_close", |check| {
        let (updates, inbox) = mpsc::channel::<u32>();
        drop(updates);
        let cleanup = Arc::new(AtomicBool::new(false));
        let poller = {
            let cleanup = cleanup.clone();
            thread::Builder::new()
                .name("poller".into())
                .spawn(move || poll_forever(inbox, cleanup))
                .unwrap()
        };
        check();
        cleanup.store(true, Ordering::Relaxed);
        poller.join().unwrap();
    });

    scenario("fetch::loop_never_cancelled", |check| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let (stop, mut stopped) = tokio::sync::watch::channel(false);
            tokio::spawn(async move {
                // A fetch loop whose stop signal is checked only by the clean-up below.
                while !*stopped.borrow_and_update() {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            });
            match Options::new().settle(SETTLE).find_async().await {
                Ok(()) => println!("(no leak found)\n"),
                Err(report) => println!("{report}"),
            }
            stop.send(true).unwrap();
            Options::new().find_async().await.unwrap();
        });
        drop(runtime);
        let _ = check;
    });
}
