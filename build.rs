//! Present only because the manifest's `links = "leakcheck"` key requires a build script; that key
//! makes cargo refuse two copies of leakcheck in one build (each would define `pthread_create`).
fn main() {}
