#!/usr/bin/env bash
# Windows, for real, under wine: installs wine and mingw if missing, the Rust target, the
# `bcryptprimitives.dll` that Wine 8.0 lacks (Rust's std imports its `ProcessPrng`; the source is
# scripts/wine/processprng.c), then runs the core suites' fixtures one per process on Windows and
# on this host and compares their verdicts, and runs the parallel, tasks, verdicts, threads, counts
# and child-process suites whole on Windows (scripts/platform_verdicts.py), then the unit tests.
#
# Environment: CARGO_TARGET_DIR for the Windows build (default target/windows); WINEPREFIX as wine's.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v wine >/dev/null || ! command -v x86_64-w64-mingw32-gcc >/dev/null; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wine64 gcc-mingw-w64-x86-64 >/dev/null
fi
rustup target add x86_64-pc-windows-gnu >/dev/null

export WINEDEBUG=-all
prefix="${WINEPREFIX:-$HOME/.wine}"
if [ ! -d "$prefix/drive_c/windows/system32" ]; then
  wineboot -i >/dev/null 2>&1
fi
dll="$prefix/drive_c/windows/system32/bcryptprimitives.dll"
if [ ! -f "$dll" ]; then
  x86_64-w64-mingw32-gcc -shared -O2 -o "$dll" scripts/wine/processprng.c -ladvapi32
fi

export CARGO_TARGET_X86_64_PC_WINDOWS_GNU_LINKER=x86_64-w64-mingw32-gcc
export CARGO_TARGET_X86_64_PC_WINDOWS_GNU_RUNNER=wine
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target/windows}"
# Attribution is exact there (the `CreateThread` and `CreateProcessW` hooks) and survivors'
# stacks are captured (by suspending them), so these suites also run whole, tests in parallel as
# `cargo test` runs them.
python3 scripts/platform_verdicts.py x86_64-pc-windows-gnu \
  --whole=counts,parallel,it/tasks,it/verdicts,it/threads,it/children,children_parallel wine
# The unit tests too: the Windows backends' own (a thread of another process is never suspended,
# the CreateProcessW hook records a child with its creation time).
cargo test --target x86_64-pc-windows-gnu --lib
