#!/usr/bin/env python3
"""The cost of leakcheck where users run it, against a binary that does not link it.

Builds `benches/cost/plain` (plain `#[test]`) and `benches/cost/checked` (the same tests under
`#[leak_test]`) in debug (what `cargo test` builds) and release, then times the test binaries
themselves (not cargo), alternating plain and checked runs, and prints a Markdown table of medians:

- 1000 trivial tests at `--test-threads=1`, 1000 idle threads started before `main`;
- one trivial test in a fresh process (how `cargo nextest` runs every test), no idle threads;
- 1000 tests whose thread finishes 1 ms after the body, with and without a rule that hides
  nothing (`ignore_thread = "unrelated-*"`);
- the first report in a fresh process (cold) and a second one in the same process (warm), for
  five survivors, settle 0;
- the debug trivial row again with leakcheck as a whole built at `opt-level = 3`
  (`[profile.dev.package.leakcheck]`; the tests stay unoptimised): what the recommended profile
  override buys;
- with `--compile`: a clean build of the checked crate's tests and its test binary's size, with
  leakcheck's default features, with `default-features = false`, and with the profile override.

With `--pairs N`: only the debug rows of trivial tests (default, and with the override), as N
rounds of the three binaries in rotating order, printing the medians and the quartiles of each
round's ratio to the plain binary; on a noisy machine the paired ratio is the steadier figure (a
plain-against-plain run shows the noise).

With `--instructions`: the trivial-test rows (debug default, debug with the override, release) as
instruction counts under callgrind (valgrind), which a loaded or shared machine does not move; the
ratio to the plain binary is the load-independent figure.

Usage: python3 benches/cost.py [--runs N] [--compile] | [--pairs N] | [--instructions]
"""
import json
import os
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
COST = os.path.join(HERE, "cost")
TARGET = os.path.join(COST, "target")
RUNS = int(sys.argv[sys.argv.index("--runs") + 1]) if "--runs" in sys.argv else 9


# The recommended profile override: leakcheck optimised in debug builds.
OPTIMISED = ["--config", "profile.dev.package.leakcheck.opt-level=3"]


def build(crate, release, features=(), target=TARGET, config=()):
    """Builds a crate's test binaries; returns {test target name: executable path}."""
    cmd = ["cargo", *config, "test", "--no-run", "--message-format=json", "--quiet"]
    if release:
        cmd.append("--release")
    if features:
        cmd += ["--features", ",".join(features)]
    env = dict(os.environ, CARGO_TARGET_DIR=target)
    env.pop("RUSTFLAGS", None)
    out = subprocess.run(cmd, cwd=os.path.join(COST, crate), env=env, check=True,
                         stdout=subprocess.PIPE, text=True).stdout
    exes = {}
    for line in out.splitlines():
        msg = json.loads(line)
        if msg.get("reason") == "compiler-artifact" and msg.get("executable"):
            exes[msg["target"]["name"]] = msg["executable"]
    return exes


def run(exe, *args, extra_env=None):
    env = dict(os.environ)
    for key in list(env):
        if key.startswith("LEAKCHECK") or key == "RUST_BACKTRACE":
            env.pop(key)
    env.update(extra_env or {})
    started = time.perf_counter()
    out = subprocess.run([exe, *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    elapsed = time.perf_counter() - started
    if out.returncode != 0:
        sys.exit(f"{exe} {args} failed:\n{out.stdout[-3000:]}")
    return elapsed, out.stdout


def alternate(a, b, *args, runs=None, extra_env=None):
    """Median wall time of `a` and `b`, run alternately RUNS times each."""
    ta, tb = [], []
    run(a, *args, extra_env=extra_env), run(b, *args, extra_env=extra_env)  # warm the page cache
    for _ in range(runs or RUNS):
        ta.append(run(a, *args, extra_env=extra_env)[0])
        tb.append(run(b, *args, extra_env=extra_env)[0])
    return statistics.median(ta), statistics.median(tb)


def pairs(n):
    """The debug trivial-test rows as `n` rounds: medians and the quartiles of each round's ratio."""
    exes = {
        "without": build("plain", False)["cost"],
        "with": build("checked", False)["cost"],
        "with, leakcheck at opt-level 3": build("checked", False, target=TARGET + "-opt", config=OPTIMISED)["cost"],
    }
    args = ("--test-threads=1", "-q", "trivial_")
    names = list(exes)
    for exe in exes.values():
        run(exe, *args)  # warm the page cache
    times = {name: [] for name in names}
    for i in range(n):
        # Each binary takes each place in the round equally often.
        order = names[i % 3:] + names[: i % 3]
        if i // 3 % 2:
            order.reverse()
        for name in order:
            times[name].append(run(exes[name], *args)[0])
    plain = statistics.median(times["without"])
    print(f"1000 trivial tests, 1000 idle threads (debug), {n} rounds: without {ms(plain)}")
    for name in names[1:]:
        ratios = [c / p for p, c in zip(times["without"], times[name])]
        quartiles = ", ".join(f"{q:.3f}" for q in statistics.quantiles(ratios, n=4))
        print(f"  {name}: {ms(statistics.median(times[name]))}, ratio of medians "
              f"{statistics.median(times[name]) / plain:.3f}, paired ratios (quartiles) {quartiles}")


def instructions():
    """The trivial-test rows as instructions executed (callgrind's total), plain against checked."""
    def count(exe, *args, idle="1000"):
        env = dict(os.environ, COST_IDLE_THREADS=idle)
        for key in list(env):
            if key.startswith("LEAKCHECK"):
                env.pop(key)
        out = subprocess.run(["valgrind", "--tool=callgrind", "--max-threads=2000", "--callgrind-out-file=/dev/null", exe, *args],
                             env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True).stderr
        return int(next(line for line in out.splitlines() if "Collected" in line).split()[-1])
    print("| instructions (callgrind) | without leakcheck | with leakcheck | ratio | added per test |")
    print("|---|---|---|---|---|")
    builds = [
        ("debug", build("plain", False)["cost"], build("checked", False)["cost"]),
        ("debug, leakcheck at opt-level 3", build("plain", False)["cost"],
         build("checked", False, target=TARGET + "-opt", config=OPTIMISED)["cost"]),
        ("release", build("plain", True)["cost"], build("checked", True)["cost"]),
    ]
    for mode, plain, checked in builds:
        p = count(plain, "--test-threads=1", "-q", "trivial_")
        c = count(checked, "--test-threads=1", "-q", "trivial_")
        print(f"| 1000 trivial tests, 1000 idle threads ({mode}) | {p / 1e6:.1f}M | {c / 1e6:.1f}M | "
              f"{c / p:.3f}× | {(c - p) / 1000:,.0f} |")
        p = count(plain, "--exact", "trivial_0001", idle="0")
        c = count(checked, "--exact", "trivial_0001", idle="0")
        print(f"| 1 trivial test in a fresh process ({mode}) | {p / 1e6:.1f}M | {c / 1e6:.1f}M | "
              f"{c / p:.3f}× | {c - p:,.0f} |")


def ms(seconds):
    return f"{seconds * 1e3:.0f} ms"


def main():
    rows = []
    for release in (False, True):
        mode = "release" if release else "debug"
        plain = build("plain", release)["cost"]
        checked = build("checked", release)["cost"]
        rule = build("checked", release, features=["rule"])["cost"]
        p, c = alternate(plain, checked, "--test-threads=1", "-q", "trivial_")
        rows.append((f"1000 trivial tests, 1000 idle threads ({mode})", ms(p), ms(c), f"{c / p:.2f}×",
                     f"{(c - p) / 1000 * 1e6:.1f} µs"))
        if not release:
            optimised = build("checked", False, target=TARGET + "-opt", config=OPTIMISED)["cost"]
            p, o = alternate(plain, optimised, "--test-threads=1", "-q", "trivial_")
            rows.append(("same, leakcheck at opt-level 3 (the README's profile override) (debug)", ms(p), ms(o),
                         f"{o / p:.2f}×", f"{(o - p) / 1000 * 1e6:.1f} µs"))
        # A process per test, as `cargo nextest` runs them: the start-up and the first thread
        # creation (its backtrace's call-frame information evaluated afresh) are paid per test.
        p, c = alternate(plain, checked, "--exact", "trivial_0001", runs=RUNS * 5,
                         extra_env={"COST_IDLE_THREADS": "0"})
        rows.append((f"1 trivial test in a fresh process, no idle threads, as nextest runs each test ({mode})",
                     f"{p * 1e3:.1f} ms", f"{c * 1e3:.1f} ms", f"{c / p:.2f}×", f"{(c - p) * 1e6:.0f} µs"))
        p, c = alternate(plain, checked, "--test-threads=1", "-q", "settling_")
        rows.append((f"1000 tests leaving a thread that ends 1 ms later ({mode})", ms(p), ms(c), f"{c / p:.2f}×",
                     f"{(c - p) / 1000 * 1e6:.1f} µs"))
        _, r = alternate(checked, rule, "--test-threads=1", "-q", "settling_")
        rows.append((f"same, every test with a rule that hides nothing ({mode})", ms(p), ms(r), f"{r / p:.2f}×",
                     f"{(r - p) / 1000 * 1e6:.1f} µs"))
        report = build("checked", release)["report"]
        cold, warm = [], []
        for _ in range(RUNS):
            _, out = run(report, "--ignored", "--exact", "first_report", "--nocapture", "--test-threads=1")
            fields = out[out.index("COST ") :].split()
            cold.append(float(fields[1]))
            warm.append(float(fields[2]))
        rows.append((f"first report, 5 survivors, fresh process: cold ({mode})", "", f"{statistics.median(cold):.0f} ms", "", ""))
        rows.append((f"second report in the same process: warm ({mode})", "", f"{statistics.median(warm):.0f} ms", "", ""))
    print(f"leakcheck cost, medians of {RUNS} alternating runs, {os.cpu_count()} CPUs\n")
    print("| measurement | without leakcheck | with leakcheck | ratio | added per test |")
    print("|---|---|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    if "--compile" in sys.argv:
        compile_rows()


def compile_rows():
    """Clean builds of the checked crate's tests with and without leakcheck's default features."""
    print("\n| leakcheck features | clean `cargo test --no-run` (debug) | test binary size |")
    print("|---|---|---|")
    variants = (
        ("default", False, ()),
        ("`default-features = false`", True, ()),
        ("default, leakcheck at `opt-level = 3` (profile override)", False, OPTIMISED),
    )
    for label, threads_only, config in variants:
        target = TARGET + "-compile"
        subprocess.run(["rm", "-rf", target], check=True)
        manifest = os.path.join(COST, "checked", "Cargo.toml")
        original = open(manifest).read()
        try:
            if threads_only:
                open(manifest, "w").write(original.replace(
                    'leakcheck = { path = "../../.." }',
                    'leakcheck = { path = "../../..", default-features = false }'))
            started = time.perf_counter()
            exes = build("checked", False, target=target, config=config)
            elapsed = time.perf_counter() - started
        finally:
            open(manifest, "w").write(original)
        size = os.path.getsize(exes["cost"]) / 1e6
        print(f"| {label} | {elapsed:.1f} s | {size:.1f} MB |")


if __name__ == "__main__" and "--instructions" in sys.argv:
    instructions()
elif __name__ == "__main__":
    if "--pairs" in sys.argv:
        pairs(int(sys.argv[sys.argv.index("--pairs") + 1]))
    else:
        main()
