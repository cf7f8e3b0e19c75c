//! `leakcheck::dump()`, `thread_count()` and `task_count()` outside tests: a small tokio service
//! with an admin endpoint (`GET /debug/threads`) and a `SIGUSR1` handler that print what every
//! thread is doing, goleak-style "profile of all goroutines" for a live process.
//!
//! `cargo run --example admin` starts the service on a loopback port, sends itself `SIGUSR1`,
//! queries the endpoint once, prints both, and exits. `cargo run --example admin -- --serve` keeps
//! serving (`curl 127.0.0.1:PORT/debug/threads`, `kill -USR1 PID`) until Ctrl-C.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// The admin page: counts, then the dump.
fn admin_page() -> String {
    let dump = leakcheck::dump();
    format!(
        "threads: {}\ntasks: {}\n\n{dump}",
        leakcheck::thread_count().map_or("unavailable".into(), |n| n.to_string()),
        leakcheck::task_count().map_or("n/a".into(), |n| n.to_string())
    )
}

async fn serve(listener: TcpListener) {
    loop {
        let Ok((mut stream, _)) = listener.accept().await else {
            continue;
        };
        tokio::spawn(async move {
            let mut request = [0u8; 1024];
            let read = stream.read(&mut request).await.unwrap_or(0);
            let request = String::from_utf8_lossy(&request[..read]);
            let (status, body) = if request.starts_with("GET /debug/threads ") {
                // Stack capture and symbol resolution block: keep them off the async workers.
                let page = tokio::task::spawn_blocking(admin_page).await.unwrap_or_default();
                ("200 OK", page)
            } else {
                ("404 Not Found", "try GET /debug/threads\n".to_string())
            };
            let response = format!(
                "HTTP/1.1 {status}\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = stream.write_all(response.as_bytes()).await;
        });
    }
}

/// `SIGUSR1` prints the admin page to stderr (Unix; elsewhere only the HTTP endpoint serves it).
#[cfg(unix)]
mod sigusr1 {
    use tokio::signal::unix::{signal, SignalKind};

    /// Installs the handler (before anything can send the signal: its default action ends the
    /// process).
    pub fn install() {
        let mut signals = signal(SignalKind::user_defined1()).expect("install a SIGUSR1 handler");
        tokio::spawn(async move {
            while signals.recv().await.is_some() {
                let page = tokio::task::spawn_blocking(super::admin_page)
                    .await
                    .unwrap_or_default();
                eprintln!("== SIGUSR1: thread dump\n{page}");
            }
        });
    }

    /// Sends `SIGUSR1` to this process.
    pub fn send() {
        // SAFETY: sends SIGUSR1 to this process, whose handler `install` set up.
        unsafe { libc::kill(libc::getpid(), libc::SIGUSR1) };
    }
}

#[cfg(not(unix))]
mod sigusr1 {
    pub fn install() {}
    pub fn send() {}
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind a loopback port");
    let address = listener.local_addr().unwrap();
    println!(
        "admin endpoint: http://{address}/debug/threads (pid {})",
        std::process::id()
    );
    tokio::spawn(serve(listener));
    sigusr1::install();

    if std::env::args().any(|arg| arg == "--serve") {
        let _ = tokio::signal::ctrl_c().await;
        return;
    }

    sigusr1::send();
    tokio::time::sleep(Duration::from_millis(500)).await;

    let mut stream = TcpStream::connect(address).await.unwrap();
    stream
        .write_all(b"GET /debug/threads HTTP/1.1\r\nhost: localhost\r\n\r\n")
        .await
        .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    println!("== GET /debug/threads\n{response}");
}
