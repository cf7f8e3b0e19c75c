//! The benchmark's test binary: see `../../cost_tests.rs` (shared by both crates).

include!("../../cost_tests.rs");
