//! Does not compile, on purpose: see `Cargo.toml`.

#[cfg(test)]
mod tests {
    use leakcheck::leak_test;

    #[leak_test]
    async fn needs_a_runtime() {}
}
