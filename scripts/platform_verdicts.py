#!/usr/bin/env python3
"""Runs the leak fixtures of the core suites one test per process on this host and on another
target (e.g. Windows under wine), and compares their verdicts: a fixture must pass or fail on the
target as it does here. Prints the table; exits 1 on a difference or a crash.

Usage: platform_verdicts.py TARGET [--whole=SUITE,...] [RUNNER...]
  (e.g. x86_64-pc-windows-gnu --whole=counts,it/tasks wine): the --whole suites also run whole,
  in parallel, on the target (default: counts).
Environment: CARGO_TARGET_DIR for the target's build (the host's is cargo's default).
"""
import json
import re
import os
import subprocess
import sys

# A suite is a test binary, or a module of the shared `it` binary (`it/threads`).
SUITES = ["it/threads", "it/tasks", "parallel", "it/verdicts", "static_build", "it/fallback", "it/report",
          "it/children", "children_parallel"]
# Suites run whole on the target too, by default (their assertions hold on every platform).
WHOLE = ["counts"]


def binary(suite):
    """The test binary a suite is in, and the libtest filter that selects it there."""
    exe, _, module = suite.partition("/")
    return exe, (module + "::" if module else "")


def build(target, env):
    args = ["cargo", "test", "--no-run", "--message-format=json"]
    if target:
        args += ["--target", target]
    for exe in sorted({binary(suite)[0] for suite in SUITES + WHOLE}):
        args += ["--test", exe]
    out = subprocess.run(args, env=env, stdout=subprocess.PIPE, text=True, check=True)
    exes = {}
    for line in out.stdout.splitlines():
        message = json.loads(line)
        if message.get("reason") == "compiler-artifact" and message.get("executable"):
            exes[message["target"]["name"]] = message["executable"]
    return exes


def run(runner, exe, args, env=None):
    proc = subprocess.run(runner + [exe] + args, capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, WINEDEBUG="-all", **(env or {})))
    return proc.returncode, proc.stdout + proc.stderr


def fixtures(exe, prefix, runner):
    _, out = run(runner, exe, ["--list", "--ignored"])
    names = [line.split(": ")[0] for line in out.splitlines()
             if line.endswith(": test") and "fixture" in line and line.startswith(prefix)]
    # The parallel suite's 36 clean fixtures are one fixture repeated: four stand for them. Its
    # lingering and residual fixtures start process-wide threads (a shared service, rayon's global
    # pool) that only lineage tells from the test's own: a before/after diff counts them.
    return [name for name in names
            if (not re.fullmatch(r"fixture_clean_\d+", name) or int(name.rsplit("_", 1)[1]) < 4)
            and not re.search(r"fixture_(clean_linger|residual)_", name)]


def verdict(runner, exe, name):
    code, out = run(runner, exe, ["--ignored", "--exact", name, "--test-threads=1"])
    if "panicked at" not in out and code not in (0, 101):
        return f"crash ({code})", out
    return ("pass" if code == 0 else "FAIL"), out


def main():
    target, runner = sys.argv[1], sys.argv[2:]
    whole = WHOLE
    if runner and runner[0].startswith("--whole="):
        whole = runner.pop(0).split("=", 1)[1].split(",")
    host_env = dict(os.environ)
    host_env.pop("CARGO_TARGET_DIR", None)
    host = build(None, host_env)
    other = build(target, dict(os.environ))
    wrong = 0
    print(f"{'fixture':<58} {'host':<6} {target}")
    for suite in SUITES:
        exe, prefix = binary(suite)
        built_there = set(fixtures(other[exe], prefix, runner))
        for name in fixtures(host[exe], prefix, []):
            here, _ = verdict([], host[exe], name)
            if name not in built_there:
                # A fixture of the host's platform alone (`fork`, zombies): nothing to compare.
                print(f"{exe + '::' + name:<58} {here:<6} (not built for {target})")
                continue
            there, out = verdict(runner, other[exe], name)
            mark = "" if here == there else "   <-- differs"
            print(f"{exe + '::' + name:<58} {here:<6} {there}{mark}")
            if mark:
                wrong += 1
                print(out)
    for suite in whole:
        exe, prefix = binary(suite)
        # As `cargo test` runs it: `CARGO_MANIFEST_DIR` set, so reports show paths relative to
        # the package (wine's current directory is a `Z:\` path, which Unix paths never start
        # with), as the suites' assertions expect.
        code, out = run(runner, other[exe], [prefix] if prefix else [],
                        {"CARGO_MANIFEST_DIR": os.getcwd()})
        print(f"{suite + ' (whole suite)':<58} {'':<6} {'pass' if code == 0 else 'FAIL'}")
        if code != 0:
            wrong += 1
            print(out)
    sys.exit(1 if wrong else 0)


if __name__ == "__main__":
    main()
