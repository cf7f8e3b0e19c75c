#!/usr/bin/env python3
"""Builds tests/static_build.rs with `+crt-static` (where `pthread_create` cannot be interposed)
and runs each of its fixtures one test per process, with `--test-threads=1` and under
`cargo nextest run`: the leaky fixtures must fail, the clean ones pass, every report must name
the static build as the reason for the process-diff mode, and nothing may crash.

Environment: CARGO_TARGET_DIR (default target/static), TARGET (default x86_64-unknown-linux-gnu).
"""
import json
import os
import re
import shutil
import subprocess
import sys

TARGET = os.environ.get("TARGET", "x86_64-unknown-linux-gnu")
ENV = dict(os.environ,
           RUSTFLAGS="-C target-feature=+crt-static",
           CARGO_TARGET_DIR=os.environ.get("CARGO_TARGET_DIR", "target/static"))
ENV.pop("LEAKCHECK_JSON", None)
CARGO = ["cargo", "test", "--target", TARGET, "--test", "static_build"]
NOTE = "this is a static build (`+crt-static`)"
CRASH = re.compile(r"SIGSEGV|SIGABRT|stack overflow|os error 38|Function not implemented")


def build():
    out = subprocess.run(CARGO + ["--no-run", "--message-format=json"], env=ENV,
                         stdout=subprocess.PIPE, text=True, check=True)
    for line in out.stdout.splitlines():
        message = json.loads(line)
        if message.get("reason") == "compiler-artifact" and message.get("executable") \
                and message["target"]["name"] == "static_build":
            return message["executable"]
    sys.exit("static_build test binary not found")


def fixtures(exe):
    out = subprocess.run([exe, "--list", "--ignored"], env=ENV, stdout=subprocess.PIPE,
                         text=True, check=True)
    return [line.split(":")[0] for line in out.stdout.splitlines() if line.startswith("fixture_")]


def check(label, name, passed, output):
    expected_pass = "clean" in name
    problems = []
    if passed != expected_pass:
        problems.append(f"{'passed' if passed else 'failed'}, expected "
                        f"{'pass' if expected_pass else 'fail'}")
    if not passed and NOTE not in output:
        problems.append("report lacks the static-build mode note")
    if not passed and "not supported in a static (`+crt-static`) build" not in output:
        problems.append("report does not say why stacks are missing")
    if CRASH.search(output):
        problems.append("crashed or could not start a thread")
    for problem in problems:
        print(f"{label} {name}: {problem}\n{output}")
    return len(problems)


def main():
    exe = build()
    names = fixtures(exe)
    if not names:
        sys.exit("no fixtures in static_build")
    wrong = 0
    # The binary itself, one test per process (the plain test included: threads must start).
    plain = subprocess.run([exe, "--test-threads=1"], env=ENV, capture_output=True, text=True)
    if plain.returncode != 0:
        wrong += 1
        print("static_build's own tests failed:\n" + plain.stdout + plain.stderr)
    for name in names:
        run = subprocess.run([exe, "--ignored", "--exact", name, "--test-threads=1"], env=ENV,
                             capture_output=True, text=True)
        wrong += check("--test-threads=1", name, run.returncode == 0, run.stdout + run.stderr)
    if shutil.which("cargo-nextest"):
        for name in names:
            run = subprocess.run(["cargo", "nextest", "run", "--target", TARGET, "--test",
                                  "static_build", "--run-ignored", "only", "--no-fail-fast",
                                  "-E", f"test(={name})"],
                                 env=ENV, capture_output=True, text=True)
            wrong += check("nextest", name, run.returncode == 0, run.stdout + run.stderr)
        nextest_runs = len(names)
    else:
        print("cargo-nextest is not installed here; nextest part skipped")
        nextest_runs = 0
    print(f"static build: {len(names)} fixtures (--test-threads=1) + {nextest_runs} (nextest), "
          f"{wrong} wrong verdicts or notes")
    return 1 if wrong else 0


if __name__ == "__main__":
    sys.exit(main())
