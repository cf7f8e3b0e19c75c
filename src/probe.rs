//! Probes: what the OS and tokio tell us, and nothing else. Probes know nothing of options,
//! rules, checks or reports; they return model data (or raw ids and addresses).
//!
//! - [`lineage`]: which thread created which (the interposed `pthread_create` in
//!   `lineage/interpose.rs`, the registry of live threads in `lineage/registry.rs`), with each
//!   thread's raw creation backtrace;
//! - [`children`]: which thread started which child process (the interposed `posix_spawn`,
//!   `posix_spawnp`, `fork`, in `children/interpose.rs`; Windows' hooked `CreateProcessW`, in
//!   `sys/windows_hook.rs`), and what `/proc/<pid>` says of it;
//! - [`singleton`]: whether a thread was created inside a one-time initializer (a process-wide
//!   pool in a `static`), from its creation backtrace's raw addresses;
//! - `fork`: the locks held across an interposed `fork`, and the registries reset in its child;
//! - [`procfs`]: the process's threads, their names and kernel state, from `/proc/self`;
//! - [`wakeup`]: when a thread blocked in a system call can wake by itself (its timeout);
//! - [`stack`]: other threads' current stacks (signal protocol, handler, unwinder ranges);
//! - [`symbols`]: raw addresses to [`Frame`](crate::model::Frame)s, cached;
//! - [`tasks`]: tokio runtime metrics, spawn hooks, and async traces from task dumps;
//! - [`runtime_workers`]: the worker threads of the current tokio runtime, found exactly;
//! - [`source`]: the user's source at a known line (a `select!`'s branches, a task builder's
//!   `.name(..)`, a `recv` on a lock's guard), lexed by `source/tokens.rs`, read by
//!   `source/chains.rs`;
//! - [`startup`]: what must be read before `main`;
//! - [`sys`]: the platform interface: threads, names, kernel state, stacks, creation hooks and
//!   children, one backend per platform, chosen there and nowhere else;
//! - `symtab`: the executable's ELF symbol table, for functions debug info names bare (Linux);
//! - [`unwind`]: the calling thread's own backtrace, fast (for creation sites on hot paths).

// The Linux backend's parts that are plain logic (`procfs` parsing, the lineage registry's
// creation side, the child registry, the unwinder) compile on every target, so one copy is shared
// and tested with glibc; where the interposers and the signal protocol are not built (other
// platforms, musl, `+crt-static`) nothing calls them: unused there, not wrong.
#![cfg_attr(
    not(all(target_os = "linux", target_env = "gnu", not(target_feature = "crt-static"))),
    allow(dead_code, unused_imports)
)]

pub(crate) mod children;
#[cfg(any(
    all(target_os = "linux", target_env = "gnu", not(target_feature = "crt-static")),
    target_os = "macos"
))]
mod fork;
pub(crate) mod lineage;
pub(crate) mod procfs;
#[cfg(feature = "tokio")]
pub(crate) mod runtime_workers;
pub(crate) mod singleton;
pub(crate) mod source;
pub(crate) mod stack;
pub(crate) mod startup;
pub(crate) mod symbols;
#[cfg(target_os = "linux")]
pub(crate) mod symtab;
pub(crate) mod sys;
#[cfg(feature = "tokio")]
pub(crate) mod tasks;
pub(crate) mod unwind;
pub(crate) mod wakeup;
