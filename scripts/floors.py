#!/usr/bin/env python3
"""Honest version floors: builds leakcheck, as a user's dependency, with every direct dependency
(of leakcheck and leakcheck-macros) pinned to the minimum its Cargo.toml declares.

A scratch package outside the workspace depends on leakcheck by path (default features, as a
user's `[dev-dependencies]` would), resolves a fresh lockfile, pins each dependency with
`cargo update -p NAME --precise FLOOR`, and runs `cargo check`. It then repeats with
`--cfg tokio_unstable` and tokio at that build's own floor (see the guide's supported versions, docs/guide/versions.md).
Cargo's `-Z minimal-versions` is nightly-only, hence this. Needs crates.io; touches no lockfile
of the repository. Usage: scripts/floors.py [TARGET_DIR]
"""
import os
import re
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Builds that need a newer tokio than the default build: (RUSTFLAGS, features, tokio floor).
EXTRA_BUILDS = [("--cfg tokio_unstable", [], "1.46.0")]


def declared(manifest):
    """(name, floor) for each versioned dependency in `[dependencies]`."""
    deps, section = [], None
    for line in open(manifest):
        line = line.strip()
        if line.startswith("["):
            section = line
            continue
        if section != "[dependencies]" or not line or line.startswith("#"):
            continue
        m = re.match(r'^([\w-]+)\s*=\s*(?:"([^"]+)"|\{.*?version\s*=\s*"([^"]+)")', line)
        if not m:
            continue
        name, req = m.group(1), m.group(2) or m.group(3)
        if req.startswith("="):
            continue  # an exact, path-paired version (leakcheck-macros)
        parts = req.lstrip("^~").split(".")
        deps.append((name, ".".join((parts + ["0", "0"])[:3])))
    return deps


def pin(name, floor, cwd):
    """`cargo update -p NAME --precise FLOOR`; when several versions of NAME are locked (another
    major), the one with FLOOR's major is pinned."""
    args = ["cargo", "update", "-p", name, "--precise", floor]
    result = subprocess.run(args, cwd=cwd, capture_output=True, text=True)
    if "is ambiguous" in result.stderr:
        major = floor.split(".")[0] if not floor.startswith("0.") else ".".join(floor.split(".")[:2])
        specs = re.findall(rf"^\s+({re.escape(name)}@(\S+))$", result.stderr, re.M)
        spec = next(s for s, v in specs if v == major or v.startswith(major + "."))
        args = ["cargo", "update", "-p", spec, "--precise", floor]
        result = subprocess.run(args, cwd=cwd, capture_output=True, text=True)
    print("+", " ".join(args), flush=True)
    if result.returncode != 0:
        sys.stderr.write(result.stderr)
        sys.exit(f"floors: cannot pin {name} to its declared floor {floor}")


def run(args, cwd, env=None):
    print("+", " ".join(args), flush=True)
    result = subprocess.run(args, cwd=cwd, env={**os.environ, **(env or {})})
    if result.returncode != 0:
        sys.exit(f"floors: `{' '.join(args)}` failed")


def main():
    target = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "target", "floors")
    deps = declared(os.path.join(ROOT, "Cargo.toml")) + declared(
        os.path.join(ROOT, "macros", "Cargo.toml"))
    floors = {}
    for name, floor in deps:
        floors[name] = min(floors.get(name, floor), floor, key=lambda v: [int(x) for x in v.split(".")])
    print("declared floors:", ", ".join(f"{n} {v}" for n, v in sorted(floors.items())))
    with tempfile.TemporaryDirectory() as scratch:
        os.makedirs(os.path.join(scratch, "src"))
        with open(os.path.join(scratch, "Cargo.toml"), "w") as f:
            f.write('[package]\nname = "floor-check"\nversion = "0.0.0"\nedition = "2021"\n'
                    '[workspace]\n[dependencies]\n'
                    f'leakcheck = {{ path = "{ROOT}" }}\n')
        with open(os.path.join(scratch, "src", "lib.rs"), "w") as f:
            f.write("pub use leakcheck;\n")
        run(["cargo", "generate-lockfile"], scratch)
        for name, floor in sorted(floors.items()):
            pin(name, floor, scratch)
        env = {"CARGO_TARGET_DIR": target}
        run(["cargo", "check"], scratch, env)
        for rustflags, features, tokio in EXTRA_BUILDS:
            pin("tokio", tokio, scratch)
            flags = ["--features", ",".join("leakcheck/" + f for f in features)] if features else []
            run(["cargo", "check"] + flags, scratch,
                {"CARGO_TARGET_DIR": target + "-unstable", "RUSTFLAGS": rustflags})
    print("floors: leakcheck builds with every direct dependency at its declared minimum")


if __name__ == "__main__":
    main()
