//! Empty: the benchmark is in tests/cost.rs.
