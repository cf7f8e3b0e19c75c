//! Nothing to build: cargo requires a build script for the manifest's `links = "leakcheck"` key,
//! which makes it refuse two copies of leakcheck in one build (each would define
//! `pthread_create`).

fn main() {}
