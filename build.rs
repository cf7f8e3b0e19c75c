//! Compiles the hot path (`src/hot/`) with optimisation, whatever the profile, and bundles it
//! with the crate as a static library; see `src/hot/lib.rs` for why and how.
//!
//! The manifest's `links = "leakcheck"` key (which requires a build script) also makes cargo
//! refuse two copies of leakcheck in one build: each would define `pthread_create`.
//!
//! If the object cannot be built (an unusual toolchain or target), the build goes on without it:
//! leakcheck then compiles the same files itself (correct, slower in debug builds), and cargo
//! shows a warning saying so. `LEAKCHECK_BUILD_INLINE=1` asks for that on purpose.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    println!("cargo::rustc-check-cfg=cfg(leakcheck_hot_linked)");
    println!("cargo::rustc-check-cfg=cfg(leakcheck_hot_object)");
    println!("cargo::rerun-if-changed=src/hot");
    println!("cargo::rerun-if-env-changed=LEAKCHECK_BUILD_INLINE");
    if std::env::var_os("LEAKCHECK_BUILD_INLINE").is_some_and(|value| value != "0") {
        return;
    }
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    match build_object(&out).and_then(|object| archive(&object, &out.join("libleakcheck_hot.a"))) {
        Ok(()) => {
            println!("cargo::rustc-link-search=native={}", out.display());
            println!("cargo::rustc-link-lib=static=leakcheck_hot");
            println!("cargo::rustc-cfg=leakcheck_hot_linked");
        }
        Err(error) => {
            for line in format!(
                "leakcheck: could not build its hot path optimised, so it is compiled with the crate \
                 (correct, slower in debug builds): {error}"
            )
            .lines()
            .take(20)
            {
                println!("cargo::warning={line}");
            }
        }
    }
}

/// `$RUSTC` on `src/hot/lib.rs`: one object, optimised, for the target and with the flags of the
/// rest of the build.
fn build_object(out: &Path) -> Result<PathBuf, String> {
    let rustc = std::env::var_os("RUSTC").ok_or("RUSTC is not set")?;
    let manifest = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").ok_or("no CARGO_MANIFEST_DIR")?);
    let object = out.join("leakcheck_hot.o");
    let mut command = Command::new(rustc);
    command
        .arg(manifest.join("src/hot/lib.rs"))
        .args([
            "--crate-name",
            "leakcheck_hot",
            "--crate-type",
            "lib",
            "--edition",
            "2021",
        ])
        .args([
            "-C",
            "opt-level=3",
            "-C",
            "codegen-units=1",
            "-C",
            "debuginfo=line-tables-only",
        ])
        .args(["--cfg", "leakcheck_hot_object", "--cap-lints", "warn"])
        .arg("-C")
        .arg(format!("metadata=leakcheck_hot-{}", env("CARGO_PKG_VERSION")))
        .arg("--emit")
        .arg(format!("obj={}", object.display()));
    // The panic strategy and the target of the crate it is linked with.
    if let Ok(panic) = std::env::var("CARGO_CFG_PANIC") {
        command.arg("-C").arg(format!("panic={panic}"));
    }
    let target = env("TARGET");
    if target != env("HOST") {
        command.args(["--target", &target]);
    }
    // RUSTFLAGS (`+crt-static`, `target-cpu`, `--cfg`s) as cargo passes them to every crate.
    if let Ok(flags) = std::env::var("CARGO_ENCODED_RUSTFLAGS") {
        command.args(flags.split('\x1f').filter(|flag| !flag.is_empty()));
    }
    let output = command
        .output()
        .map_err(|error| format!("running rustc: {error}"))?;
    if !output.status.success() {
        return Err(String::from_utf8_lossy(&output.stderr).into_owned());
    }
    Ok(object)
}

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_default()
}

/// A `.a` archive holding `object` alone (the `ar` format: a global header, then a member header
/// and the member's bytes). No symbol index: rustc copies the member into leakcheck's rlib, whose
/// index it writes itself.
fn archive(object: &Path, path: &Path) -> Result<(), String> {
    let bytes = std::fs::read(object).map_err(|error| format!("reading the object: {error}"))?;
    let mut file = Vec::with_capacity(bytes.len() + 70);
    file.extend_from_slice(b"!<arch>\n");
    writeln!(
        file,
        "{:<16}{:<12}{:<6}{:<6}{:<8}{:<10}`",
        "leakcheck_hot.o/",
        0,
        0,
        0,
        644,
        bytes.len()
    )
    .map_err(|error| error.to_string())?;
    file.extend_from_slice(&bytes);
    if bytes.len() % 2 == 1 {
        file.push(b'\n');
    }
    std::fs::write(path, file).map_err(|error| format!("writing the archive: {error}"))
}
