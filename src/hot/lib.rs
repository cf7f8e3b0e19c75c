//! The hot path: what runs for every thread the process creates and every test that passes
//! clean (the interposed `pthread_create`, the thread lineage registry, the creation backtrace,
//! the attribute's usual clean pass).
//!
//! # Why it is compiled on its own
//!
//! `cargo test` builds dependencies without optimisation, and a crate cannot choose its own
//! `opt-level` in a dependent's build. Unoptimised, this code cost ~30 µs a test (every atomic
//! load, `Arc` clone and thread-local access a call of its own): measured against a binary
//! without leakcheck, 1.16× for trivial tests, against 1.01× with leakcheck optimised.
//!
//! So in unoptimised builds `build.rs` compiles these files a second time, as a crate of their
//! own (`leakcheck_hot`), with `$RUSTC -C opt-level=3`, into an object that it bundles with
//! leakcheck as a static library (`--emit obj`, not an rlib: nothing for rustdoc or a dependent to
//! look up). leakcheck then calls the functions listed in [`api`] by their exported names. The
//! object refers to std by the same symbols leakcheck does (the same compiler and sysroot std,
//! the same `RUSTFLAGS`), and back to leakcheck for the two things it cannot do alone: evaluating
//! call-frame information ([`unwind`]'s cache misses) and the slow unwinder, both through exported
//! names too.
//!
//! Both sides compile [`node::Node`] from the same file (`#[repr(C)]`, so its own fields are in
//! one order), and every other type crossing the boundary is std's, instantiated with it: the
//! same compiler with the same flags lays them out the same way on both sides. Everything with
//! state (the registry, the caches, the thread-locals) exists only in the object when it is
//! linked: leakcheck's own copy of these files is then reduced to `node.rs` and `api.rs`.
//!
//! Where the object cannot be built (an unusual toolchain) or is not wanted (an optimised build,
//! targets other than Linux, leakcheck's own unit tests, rustdoc, clippy: see `build.rs`), these
//! files are a module of leakcheck instead, with the same behaviour. `build.rs` says which with
//! the `leakcheck_hot_linked` cfg.
//!
//! Paths inside these files are relative (`super::`), never `crate::`: they compile both as a
//! crate root and as a module.

#[path = "api.rs"]
#[macro_use]
pub mod api;
#[path = "interpose.rs"]
#[cfg(all(target_os = "linux", target_env = "gnu", not(target_feature = "crt-static")))]
pub mod interpose;
#[path = "lineage.rs"]
pub mod lineage;
#[path = "node.rs"]
pub mod node;
#[path = "pass.rs"]
pub mod pass;
#[path = "sys.rs"]
mod sys;
#[path = "unwind.rs"]
pub mod unwind;

#[cfg(leakcheck_hot_object)]
mod exports {
    use std::sync::atomic::AtomicBool;
    use std::sync::Arc;
    use std::time::Duration;

    use super::node::Node;
    use super::{lineage, pass, unwind};

    hot_api!(export);
}
