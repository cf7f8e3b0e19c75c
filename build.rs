//! Compiles the hot path (`src/hot/`) with optimisation in unoptimised builds (what `cargo test`
//! makes), and bundles it with the crate as a static library; see `src/hot/lib.rs` for why and
//! how.
//!
//! The manifest's `links = "leakcheck"` key (which requires a build script) also makes cargo
//! refuse two copies of leakcheck in one build: each would define `pthread_create`.
//!
//! leakcheck compiles the same files itself instead (correct, slower in debug builds) where the
//! object is not needed or would not fit:
//! - an optimised build (`opt-level` above 0): the crate is optimised already, and such builds
//!   are where link-time optimisation is used, which hides the std symbols the object calls (and
//!   a build whose `lto` this script can see, in the environment or `RUSTFLAGS`);
//! - targets other than Linux, Miri, and nightly's `-Zrandomize-layout`;
//! - `LEAKCHECK_BUILD_INLINE=1` (for toolchains whose std is not the sysroot's, `-Zbuild-std`);
//! - and if the object cannot be built: cargo then shows a warning saying so.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    println!("cargo::rustc-check-cfg=cfg(leakcheck_hot_linked)");
    println!("cargo::rustc-check-cfg=cfg(leakcheck_hot_object)");
    println!("cargo::rerun-if-changed=src/hot");
    println!("cargo::rerun-if-env-changed=LEAKCHECK_BUILD_INLINE");
    let inline = std::env::var_os("LEAKCHECK_BUILD_INLINE").is_some_and(|value| value != "0");
    let optimised = env("OPT_LEVEL") != "0";
    // The archive below is what a Linux linker expects (MSVC wants a `.lib`); the interposer and
    // the fast unwinder, most of the hot path, exist only there.
    let linux = env("CARGO_CFG_TARGET_OS") == "linux";
    let miri = std::env::var_os("CARGO_CFG_MIRI").is_some();
    // Types cross between the two compilations: a layout that may differ between them (nightly's
    // `-Zrandomize-layout` seeds by the type's path, which differs) rules the object out.
    let random_layout = env("CARGO_ENCODED_RUSTFLAGS").contains("randomize-layout");
    if inline || optimised || !linux || miri || random_layout || lto_requested() {
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

/// Whether link-time optimisation was asked for where a build script can see it: a profile's
/// `lto` set through the environment (`CARGO_PROFILE_DEV_LTO=true`) or `-C lto` in `RUSTFLAGS`. A
/// profile's `lto` written in a manifest is not visible here: see the README's Limits.
fn lto_requested() -> bool {
    let off = |value: &str| matches!(value, "" | "false" | "off" | "no" | "0");
    // (Cargo rebuilds on a change of either, profile settings and flags being part of the build.)
    let by_profile = std::env::vars()
        .any(|(name, value)| name.starts_with("CARGO_PROFILE_") && name.ends_with("_LTO") && !off(&value));
    let flags = env("CARGO_ENCODED_RUSTFLAGS");
    let mut flags = flags.split('\x1f');
    let mut by_flags = false;
    while let Some(flag) = flags.next() {
        let value = match flag {
            "-C" => flags.next().unwrap_or_default(),
            _ => flag.strip_prefix("-C").unwrap_or_default(),
        };
        if let Some(lto) = value.strip_prefix("lto") {
            by_flags |= !off(lto.trim_start_matches('='));
        }
    }
    by_profile || by_flags
}

/// `$RUSTC` on `src/hot/lib.rs`: one object, optimised, for the target and with the `RUSTFLAGS`
/// of the rest of the build.
fn build_object(out: &Path) -> Result<PathBuf, String> {
    let rustc = std::env::var_os("RUSTC").ok_or("RUSTC is not set")?;
    let manifest = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").ok_or("no CARGO_MANIFEST_DIR")?);
    let object = out.join("leakcheck_hot.o");
    let mut command = Command::new(rustc);
    // rustc writes temporary files next to its output and in its working directory: both in
    // OUT_DIR, never in the (possibly read-only, possibly shared) package sources.
    command
        .current_dir(out)
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
            // `limited`, not `line-tables-only`: the latter names a function that has inlined
            // callees by its bare name only (`trace`), which a report would then have to look
            // up in the executable's symbol table (`src/probe/symtab.rs`).
            "-C",
            "debuginfo=limited",
        ])
        .args(["--cfg", "leakcheck_hot_object", "--cap-lints", "warn"])
        .arg("-C")
        .arg(format!("metadata=leakcheck_hot-{}", env("CARGO_PKG_VERSION")))
        .arg("--out-dir")
        .arg(out)
        .arg("--emit")
        .arg(format!("obj={}", object.display()));
    // The target's panic strategy as RUSTFLAGS set it (a profile's `panic = "abort"` is not
    // visible here; code compiled to unwind links into an aborting binary, as std itself does).
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

/// A `.a` archive holding `object` alone, in the GNU `ar` format: the global header, a symbol
/// index (member `/`: the count, the offset of the member defining each symbol, the names; GNU ld
/// and gold refuse an archive without one), then the object. rustc copies the object into
/// leakcheck's rlib for dependents; leakcheck's own unit-test build links this file itself.
fn archive(object: &Path, path: &Path) -> Result<(), String> {
    let bytes = std::fs::read(object).map_err(|error| format!("reading the object: {error}"))?;
    let symbols = elf_defined_globals(&bytes).unwrap_or_default();
    let mut index = Vec::new();
    let names_len: usize = symbols.iter().map(|name| name.len() + 1).sum();
    let index_len = 4 + 4 * symbols.len() + names_len;
    let index_padded = index_len + index_len % 2;
    let member_at = 8 + if symbols.is_empty() { 0 } else { 60 + index_padded };
    index.extend_from_slice(&(symbols.len() as u32).to_be_bytes());
    for _ in &symbols {
        index.extend_from_slice(&(member_at as u32).to_be_bytes());
    }
    for name in &symbols {
        index.extend_from_slice(name);
        index.push(0);
    }
    let mut file = Vec::with_capacity(bytes.len() + index.len() + 140);
    file.extend_from_slice(b"!<arch>\n");
    if !symbols.is_empty() {
        member(&mut file, "/", &index)?;
    }
    member(&mut file, "leakcheck_hot.o/", &bytes)?;
    std::fs::write(path, file).map_err(|error| format!("writing the archive: {error}"))
}

/// Appends one archive member: its 60-byte header, its bytes, and padding to an even offset.
fn member(file: &mut Vec<u8>, name: &str, bytes: &[u8]) -> Result<(), String> {
    writeln!(
        file,
        "{name:<16}{:<12}{:<6}{:<6}{:<8}{:<10}`",
        0,
        0,
        0,
        644,
        bytes.len()
    )
    .map_err(|error| error.to_string())?;
    file.extend_from_slice(bytes);
    if bytes.len() % 2 == 1 {
        file.push(b'\n');
    }
    Ok(())
}

/// The names of the global and weak symbols an ELF64 object defines (either byte order), or
/// `None` for anything else (the archive then has no index, which only GNU ld and gold mind).
fn elf_defined_globals(elf: &[u8]) -> Option<Vec<Vec<u8>>> {
    if elf.get(..4)? != b"\x7fELF" || *elf.get(4)? != 2 {
        return None;
    }
    let big = *elf.get(5)? == 2;
    // An unsigned field of `len` bytes at `at`, in the object's byte order.
    let int = |at: usize, len: usize| -> Option<usize> {
        let bytes = elf.get(at..at + len)?;
        let value = if big {
            bytes
                .iter()
                .fold(0u64, |value, &byte| value << 8 | u64::from(byte))
        } else {
            bytes
                .iter()
                .rev()
                .fold(0u64, |value, &byte| value << 8 | u64::from(byte))
        };
        usize::try_from(value).ok()
    };
    let (u16_at, u32_at, u64_at) = (|at| int(at, 2), |at| int(at, 4), |at| int(at, 8));
    let (sections, section_size, count) = (u64_at(0x28)?, u16_at(0x3a)?, u16_at(0x3c)?);
    let section = |index: usize| sections + index * section_size;
    let mut names = Vec::new();
    for index in 0..count {
        let header = section(index);
        // SHT_SYMTAB
        if u32_at(header + 4)? != 2 {
            continue;
        }
        let (symbols, size, entry) = (
            u64_at(header + 0x18)?,
            u64_at(header + 0x20)?,
            u64_at(header + 0x38)?,
        );
        let strings = u64_at(section(u32_at(header + 0x28)?) + 0x18)?;
        for symbol in (symbols..symbols + size).step_by(entry.max(1)) {
            let bind = elf.get(symbol + 4)? >> 4;
            let defined = u16_at(symbol + 6)? != 0;
            if defined && (bind == 1 || bind == 2) {
                let name = strings + u32_at(symbol)?;
                let end = name + elf.get(name..)?.iter().position(|&byte| byte == 0)?;
                names.push(elf[name..end].to_vec());
            }
        }
    }
    Some(names)
}
