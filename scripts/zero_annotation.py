#!/usr/bin/env python3
"""Zero-annotation mode, end to end: tests/zero_annotation.rs has `check_binary!()` and no
`#[leak_test]`. Under `cargo nextest run` (one process per test) each fixture gets its own
verdict: the leaky one FAILs, the clean ones PASS. Under `cargo test` (one process) the run exits
101 after `test result: ok`, with leakcheck's summary naming the leaking test.
"""
import re
import subprocess
import sys

FILTER = "fixture_zero_"


def main():
    nextest = subprocess.run(
        ["cargo", "nextest", "run", "--test", "zero_annotation", "--run-ignored", "only",
         "--no-fail-fast", "-E", f"test(/^{FILTER}/)"],
        capture_output=True, text=True, env={**__import__("os").environ, "LEAKCHECK_SETTLE": "300ms"},
    )
    out = nextest.stdout + nextest.stderr
    verdicts = {}
    for line in out.splitlines():
        m = re.search(r"^\s+(PASS|FAIL)\b.*zero_annotation (fixture_zero_\w+)$", line)
        if m:
            verdicts[m.group(2)] = m.group(1)
    print("cargo nextest run, per-test verdicts:")
    for test, verdict in sorted(verdicts.items()):
        print(f"  {verdict:4} {test}")
    expected = {
        "fixture_zero_clean_computes": "PASS",
        "fixture_zero_clean_joins": "PASS",
        "fixture_zero_leaky_thread": "FAIL",
    }
    if verdicts != expected:
        print(out)
        print(f"expected {expected}")
        return 1

    cargo = subprocess.run(
        ["cargo", "test", "--test", "zero_annotation", "--", "--ignored", FILTER],
        capture_output=True, text=True, env={**__import__("os").environ, "LEAKCHECK_SETTLE": "300ms"},
    )
    summary = [l for l in cargo.stderr.splitlines() if l.startswith("leakcheck: FAILED")
               or l.startswith("leakcheck: the run failed") or l.startswith("leakcheck: to fail")]
    print("cargo test, one process (exit code %d):" % cargo.returncode)
    for line in summary:
        print("  " + line)
    if (cargo.returncode == 0 or "test result: ok. 3 passed" not in cargo.stdout
            or not any("`fixture_zero_leaky_thread`" in l for l in summary)):
        print(cargo.stdout + cargo.stderr)
        return 1
    print("zero-annotation mode: per-test verdicts under nextest, summary under cargo test: ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
