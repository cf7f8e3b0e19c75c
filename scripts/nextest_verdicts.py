#!/usr/bin/env python3
"""Runs every leak fixture (the `#[ignore]`d `fixture_*` tests) under `cargo test` (many tests in
one process, in parallel) and under `cargo nextest run` (one process per test), and checks that
both give the same verdict for each: the leaky fixtures fail, the clean ones pass. A fixture is
keyed by its binary and its libtest name (`threads::fixture_x` in the shared `it` binary).

The whole-binary check's fixtures (tests/binary*.rs, tests/pools_binary.rs) are left out: there the verdict belongs to
the process, not the test, by design.
"""
import re
import subprocess
import sys

SKIP_BINARIES = {"binary", "binary_always", "binary_untracked", "zero_annotation", "pools_binary"}


def libtest_verdicts():
    out = subprocess.run(
        ["cargo", "test", "--tests", "--no-fail-fast", "--", "--ignored", "fixture_"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    verdicts, binary = {}, None
    for line in out.stdout.splitlines():
        running = re.search(r"Running tests/(\w+)(?:\.rs|/main\.rs)", line)
        if running:
            binary = running.group(1)
            continue
        test = re.match(r"test ((?:\w+::)*fixture_\w+)(?: - should panic)? \.\.\. (ok|FAILED)$", line)
        if test and binary not in SKIP_BINARIES:
            verdicts[(binary, test.group(1))] = test.group(2) == "ok"
    return verdicts


def nextest_verdicts():
    out = subprocess.run(
        ["cargo", "nextest", "run", "--tests", "--run-ignored", "only", "--no-fail-fast",
         "-E", "test(/(^|::)fixture_/)"],
        capture_output=True, text=True,
    )
    verdicts = {}
    for line in (out.stdout + out.stderr).splitlines():
        test = re.search(r"^\s+(PASS|FAIL|SIGSEGV|SIGABRT|TIMEOUT)\b.*leakcheck::(\w+) ((?:\w+::)*fixture_\w+)$", line)
        if test and test.group(2) not in SKIP_BINARIES:
            verdicts[(test.group(2), test.group(3))] = test.group(1) == "PASS"
    return verdicts


def main():
    under_cargo, under_nextest = libtest_verdicts(), nextest_verdicts()
    wrong = 0
    if not under_cargo or under_cargo.keys() != under_nextest.keys():
        print("fixture sets differ:", sorted(under_cargo), sorted(under_nextest))
        return 1
    for key in sorted(under_cargo):
        expected_pass = "clean" in key[1]
        if under_cargo[key] != under_nextest[key] or under_cargo[key] != expected_pass:
            wrong += 1
            print(f"{key}: cargo test {'pass' if under_cargo[key] else 'fail'}, "
                  f"nextest {'pass' if under_nextest[key] else 'fail'}, expected "
                  f"{'pass' if expected_pass else 'fail'}")
    print(f"nextest vs cargo test: {len(under_cargo)} fixtures, {wrong} differing or wrong verdicts")
    return 1 if wrong else 0


if __name__ == "__main__":
    sys.exit(main())
