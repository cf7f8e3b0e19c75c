//! The integration tests that can share one process: one module per concern, all linked into one
//! test binary. Tests that need a process of their own (start-up, whole-binary checks, process-wide
//! counts, re-runs of the whole binary, static builds, trybuild) are the other files in `tests/`,
//! each saying why in its first line.

mod common;

mod children;
mod compose;
mod fallback;
mod faults;
mod github;
mod hazards;
mod idioms;
mod ignore;
mod lifecycle;
mod names;
mod plain_tokio;
mod pools;
mod process_faults;
mod real_world;
mod registration;
mod report;
mod tasks;
mod threads;
mod usual_pass;
mod verdicts;
