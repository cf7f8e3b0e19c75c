//! Experiment: which system call (and timeout argument) each kind of wait sits in on this machine,
//! as `/proc/self/task/<tid>/syscall` shows it. Run: `cargo run --example wait_syscalls`.

// It reads `/proc`: Linux only.
#[cfg(target_os = "linux")]
mod linux {
    use std::sync::{mpsc, Condvar, Mutex};
    use std::thread;
    use std::time::Duration;

    fn show(label: &str, tid: i32) {
        let line = std::fs::read_to_string(format!("/proc/self/task/{tid}/syscall")).unwrap_or_default();
        let status = std::fs::read_to_string(format!("/proc/self/task/{tid}/status")).unwrap_or_default();
        let switches: Vec<&str> = status.lines().filter(|l| l.contains("ctxt")).collect();
        println!("{label:<40} {} {:?}", line.trim(), switches);
    }

    fn spawn(label: &'static str, f: impl FnOnce() + Send + 'static) {
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            tx.send(unsafe { libc::gettid() }).unwrap();
            f()
        });
        let tid = rx.recv().unwrap();
        thread::sleep(Duration::from_millis(100));
        show(label, tid);
    }

    pub fn main() {
        spawn("thread::sleep(30s)", || thread::sleep(Duration::from_secs(30)));
        spawn("recv()", || {
            let (_tx, rx) = mpsc::channel::<()>();
            let _ = rx.recv();
            drop(_tx);
        });
        spawn("recv_timeout(30s)", || {
            let (_tx, rx) = mpsc::channel::<()>();
            let _ = rx.recv_timeout(Duration::from_secs(30));
            drop(_tx);
        });
        spawn("Condvar::wait_timeout(30s)", || {
            let m = Mutex::new(());
            let c = Condvar::new();
            let _ = c.wait_timeout(m.lock().unwrap(), Duration::from_secs(30));
        });
        spawn("park_timeout(30s)", || {
            thread::park_timeout(Duration::from_secs(30))
        });
        spawn("TcpListener::accept", || {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let _ = l.accept();
        });
        let now = {
            let mut ts = libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            };
            unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
            ts.tv_sec
        };
        println!("CLOCK_MONOTONIC now: {now} s");
        for flavor in ["current_thread", "multi_thread"] {
            let (tx, rx) = mpsc::channel();
            thread::spawn(move || {
                let rt = match flavor {
                    "current_thread" => tokio::runtime::Builder::new_current_thread(),
                    _ => {
                        let mut b = tokio::runtime::Builder::new_multi_thread();
                        b.worker_threads(2);
                        b
                    }
                }
                .enable_all()
                .build()
                .unwrap();
                tx.send(unsafe { libc::getpid() }).unwrap();
                rt.block_on(async {
                    tokio::spawn(async {
                        let mut i = tokio::time::interval(Duration::from_secs(30));
                        loop {
                            i.tick().await;
                        }
                    });
                    std::future::pending::<()>().await
                })
            });
            rx.recv().unwrap();
            thread::sleep(Duration::from_millis(200));
            println!("-- tokio {flavor} with a 30-s interval task:");
            for task in std::fs::read_dir("/proc/self/task").unwrap() {
                let tid: i32 = task.unwrap().file_name().to_str().unwrap().parse().unwrap();
                let comm = std::fs::read_to_string(format!("/proc/self/task/{tid}/comm")).unwrap();
                if comm.contains("tokio") || flavor == "current_thread" {
                    show(&format!("  {tid} {}", comm.trim()), tid);
                }
            }
        }
    }
}

#[cfg(target_os = "linux")]
fn main() {
    linux::main();
}

#[cfg(not(target_os = "linux"))]
fn main() {
    eprintln!("wait_syscalls reads /proc/self/task/<tid>/syscall: Linux only");
}
