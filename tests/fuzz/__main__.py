"""The long fuzz run: ``python -m tests.fuzz`` (``make fuzz``).

Runs every target (or those named) until it was fed ``--inputs`` WAMP messages (one seed per
case, each case feeding several), and prints per target the messages, cases and bytes fed, the
time taken, the crashes, and this process's RSS after a warm-up and at the end (the router
lives in this process, so growth here is growth of the router). Each crash is written to
``--crash-dir`` with its seed and traceback; replay one with ``--replay TARGET:SEED``. Exit
status 1 if anything crashed or memory grew past ``--max-growth-mib``.

    python -m tests.fuzz --inputs 1000000                  # the issue's target, every target
    python -m tests.fuzz --targets rawsocket-cbor,session --inputs 20000 --seed 7
    python -m tests.fuzz --replay websocket-json:123456
"""

from __future__ import annotations

import argparse
import gc
import sys
import tempfile
import time
from pathlib import Path

from tests.fuzz.targets import Crash, Stats, all_targets

WARMUP = 0.05  # fraction of a target's inputs fed before its memory baseline is taken


def rss_mib() -> float:
    """This process's resident set size, from /proc/self/status."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def run_target(name: str, inputs: int, seed: int, crash_dir: Path, *, max_crashes: int,
               progress: bool) -> tuple[int, float]:
    """Fuzz one target until it was fed ``inputs`` messages; returns (crashes, RSS growth in
    MiB after the warm-up)."""
    target = all_targets()[name]()
    done = Stats()  # what targets replaced after a crash were fed
    crashes, cases, baseline = 0, 0, 0.0
    started = time.perf_counter()
    step = max(1, inputs // 10)
    next_report = step

    def fed() -> int:
        return done.messages + target.stats.messages

    while fed() < inputs and crashes < max_crashes:
        cases += 1
        try:
            target.run(seed + cases)
        except Crash as crash:
            crashes += 1
            _save(crash_dir, name, crash)
            done.messages += target.stats.messages
            done.bytes += target.stats.bytes
            target = all_targets()[name]()  # a fresh router: the old one may be broken
        if not baseline and fed() >= inputs * WARMUP:
            gc.collect()
            baseline = rss_mib()
        if progress and fed() >= next_report:
            next_report += step
            print(f"  {name}: {fed():,d}/{inputs:,d} messages, {cases:,d} cases in "
                  f"{time.perf_counter() - started:.0f} s, RSS {rss_mib():.1f} MiB", flush=True)
    elapsed = time.perf_counter() - started
    gc.collect()
    end = rss_mib()
    mib = (done.bytes + target.stats.bytes) / 2**20
    print(f"{name:18s} {fed():>10,d} msgs {cases:>9,d} cases {mib:>8.1f} MiB {elapsed:>7.0f} s "
          f"{fed() / elapsed if elapsed else 0:>7,.0f} msgs/s  crashes {crashes}  "
          f"RSS {baseline:.1f} -> {end:.1f} MiB", flush=True)
    return crashes, end - (baseline or end)


def _save(crash_dir: Path, name: str, crash: Crash) -> None:
    crash_dir.mkdir(parents=True, exist_ok=True)
    path = crash_dir / f"{name}-{crash.seed}.txt"
    path.write_text(f"replay: python -m tests.fuzz --replay {name}:{crash.seed}\n\n"
                    f"{crash.problem}\n")
    print(f"CRASH {name} seed {crash.seed}: {crash.problem.strip().splitlines()[-1]} ({path})",
          flush=True)


def replay(spec: str) -> int:
    name, _, seed = spec.rpartition(":")
    target = all_targets()[name]()
    try:
        target.run(int(seed))
    except Crash as crash:
        print(crash.problem)
        return 1
    print(f"{name} seed {seed}: no crash")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.fuzz", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    names = list(all_targets())
    parser.add_argument("--inputs", type=int, default=1_000_000,
                        help="WAMP messages fed per target (each case feeds several)")
    parser.add_argument("--targets", default=",".join(names),
                        help=f"comma-separated, of: {', '.join(names)}")
    parser.add_argument("--seed", type=int, default=0, help="the first case's seed")
    parser.add_argument("--crash-dir", type=Path,
                        default=Path(tempfile.gettempdir()) / "serouter-fuzz-crashes")
    parser.add_argument("--max-crashes", type=int, default=20, help="per target, then stop it")
    parser.add_argument("--max-growth-mib", type=float, default=32.0,
                        help="RSS growth after the warm-up that counts as unbounded")
    parser.add_argument("--quiet", action="store_true", help="no progress lines")
    parser.add_argument("--replay", metavar="TARGET:SEED")
    args = parser.parse_args(argv)
    if args.replay:
        return replay(args.replay)
    chosen = [n.strip() for n in args.targets.split(",") if n.strip()]
    unknown = [n for n in chosen if n not in names]
    if unknown:
        parser.error(f"unknown targets {unknown}; known: {names}")
    print(f"fuzzing {len(chosen)} targets x {args.inputs:,d} messages from seed {args.seed}",
          flush=True)
    started = time.perf_counter()
    failed = False
    for name in chosen:
        crashes, growth = run_target(name, args.inputs, args.seed, args.crash_dir,
                                     max_crashes=args.max_crashes, progress=not args.quiet)
        if growth > args.max_growth_mib:
            print(f"GROWTH {name}: RSS grew {growth:.1f} MiB after the warm-up", flush=True)
        failed = failed or bool(crashes) or growth > args.max_growth_mib
    print(f"total {time.perf_counter() - started:.0f} s: {'FAILED' if failed else 'ok'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
