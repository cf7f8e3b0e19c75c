//! Generates the benchmark's tests into `$OUT_DIR/tests.rs`: `TESTS` trivial tests, and as many
//! tests whose thread finishes 1 ms after the body (settling work), each with the attribute the
//! crate under test uses (`#[test]` for the plain crate, `#[leak_test]` for the checked one).
use std::fmt::Write as _;

const TESTS: usize = 1000;

fn main() {
    let checked = std::env::var("CARGO_PKG_NAME").unwrap() == "cost-checked";
    let rule = std::env::var_os("CARGO_FEATURE_RULE").is_some();
    let attribute = match (checked, rule) {
        (false, _) => "#[test]",
        (true, false) => "#[leakcheck::leak_test]",
        (true, true) => "#[leakcheck::leak_test(ignore_thread = \"unrelated-*\")]",
    };
    let mut out = String::new();
    for i in 0..TESTS {
        writeln!(out, "{attribute}\nfn trivial_{i:04}() {{ std::hint::black_box({i}); }}").unwrap();
        writeln!(
            out,
            "{attribute}\nfn settling_{i:04}() {{ std::thread::spawn(|| std::thread::sleep(std::time::Duration::from_millis(1))); }}"
        )
        .unwrap();
    }
    let path = std::path::Path::new(&std::env::var("OUT_DIR").unwrap()).join("tests.rs");
    std::fs::write(path, out).unwrap();
    println!("cargo::rerun-if-changed=../build.rs");
}
