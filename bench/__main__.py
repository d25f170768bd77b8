"""``python -m bench``: start the router on one core, drive it from the other, print the figures.

Steps: options -> router (started or attached) -> runs (scenario x repeat) -> table and JSON.
Never leaves a router it started running, even when a run fails.
"""

from __future__ import annotations

import argparse
import dataclasses
import fnmatch
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.loadgen import SCENARIOS, Scenario, measure
from bench.peer import Target
from bench.router import Router, pin, start_router, wait_listening
from bench.wire import BenchError, get_codec

RESULTS_DIR = Path(__file__).resolve().parent / "results"
COLUMNS = [  # (figure key, header, format)
    ("ops_per_s", "ops/s", "{:,.0f}"),
    ("p50_ms", "p50 ms", "{:.3f}"),
    ("p99_ms", "p99 ms", "{:.3f}"),
    ("router_us_per_op", "router µs/op", "{:.1f}"),
    ("router_cpu_pct", "router CPU%", "{:.0f}"),
    ("gen_us_per_op", "gen µs/op", "{:.1f}"),
    ("gen_cpu_pct", "gen CPU%", "{:.0f}"),
    ("other_cpu_pct", "other CPU%", "{:.0f}"),
]
Figures = dict[str, float | None]
NOISE_PCT = 10.0  # busy time of other programs (% of one core) that makes a run suspect


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m bench",
        description="Benchmark the serouter WAMP router: start it pinned to one core, drive it "
        "from the other with a minimal WAMP load generator, print ops/s, latency and router CPU "
        "per operation (see bench/README.md).",
    )
    p.add_argument(
        "--scenarios",
        nargs="+",
        default=["*"],
        metavar="NAME",
        help="scenario names or shell patterns, e.g. 'rpc-*' (default: all)",
    )
    p.add_argument("--list", action="store_true", help="list the scenarios and exit")
    p.add_argument("--duration", type=float, default=10.0, help="measurement window, s")
    p.add_argument("--warmup", type=float, default=2.0, help="warm-up before each window, s")
    p.add_argument("--repeat", type=int, default=3, help="runs per scenario; medians reported")
    p.add_argument(
        "--calls", type=int, metavar="N", help="calls outstanding per caller in rpc-* (default 64)"
    )
    p.add_argument(
        "--publish-window",
        type=int,
        metavar="N",
        help="how far the publisher may run ahead of the slowest subscriber (default 256)",
    )
    p.add_argument("--serializer", default="msgpack", choices=["msgpack", "json", "cbor"])
    p.add_argument(
        "--router-cmd",
        metavar="CMD",
        help="command starting the router; placeholders {python} {config} {host} "
        "{rs_port} {ws_port} {realm} (default: '{python} -m serouter run -c "
        "{config}')",
    )
    p.add_argument(
        "--attach",
        type=int,
        metavar="PID",
        help="benchmark an already running router (give its ports too)",
    )
    p.add_argument("--rs-port", type=int, help="RawSocket port of an attached router")
    p.add_argument("--ws-port", type=int, help="WebSocket port of an attached router")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--ws-path", default="/ws")
    p.add_argument("--realm", default="realm1")
    p.add_argument("--router-cpu", type=int, default=0, help="CPU for a started router; -1: none")
    p.add_argument("--gen-cpu", type=int, default=1, help="CPU for the generator; -1: none")
    p.add_argument(
        "--selinux",
        action="store_true",
        help="the started router decides every action with a compiled SELinux policy "
        "(policy-file backend, enforcing); compare with the default allow-all run",
    )
    p.add_argument(
        "--nice",
        type=int,
        metavar="N",
        help="run generator and started router at this nice value (negative: needs root; "
        "shields the figures from other programs on a shared machine)",
    )
    p.add_argument(
        "--stall-timeout",
        type=float,
        default=5.0,
        help="abort a run when the router makes no progress for this long, s",
    )
    p.add_argument(
        "--output", type=Path, help="JSON results file (default: bench/results/<timestamp>.json)"
    )
    p.add_argument("--no-save", action="store_true", help="do not write the JSON results")
    return p.parse_args(argv)


def select_scenarios(args: argparse.Namespace) -> list[Scenario]:
    names = [n.strip() for p in args.scenarios for n in p.split(",") if n.strip()]
    chosen = [s for s in SCENARIOS.values() if any(fnmatch.fnmatch(s.name, n) for n in names)]
    unknown = [n for n in names if not fnmatch.filter(SCENARIOS, n)]
    if unknown or not chosen:
        raise SystemExit(f"unknown scenario(s) {unknown}; known: {', '.join(SCENARIOS)}")
    return [with_window(s, args) for s in chosen]


def with_window(sc: Scenario, args: argparse.Namespace) -> Scenario:
    """The scenario with the window the options ask for (latency-* keep exactly one call)."""
    window = {"rpc": args.calls, "pubsub": args.publish_window}[sc.kind]
    if window is None or sc.name.startswith("latency-"):
        return sc
    if window < 1:
        raise SystemExit("--calls and --publish-window must be at least 1")
    return dataclasses.replace(sc, window=window)


def open_router(args: argparse.Namespace) -> Router:
    if args.attach is None:
        cpu = None if args.router_cpu < 0 else args.router_cpu
        return start_router(
            args.router_cmd,
            host=args.host,
            serializer=args.serializer,
            realm=args.realm,
            ws_path=args.ws_path,
            cpu=cpu,
            selinux=args.selinux,
        )
    ports = [p for p in (args.rs_port, args.ws_port) if p is not None]
    if not ports:
        raise SystemExit("--attach needs --rs-port and/or --ws-port")
    if not Path(f"/proc/{args.attach}").is_dir():
        raise SystemExit(f"--attach: no process {args.attach}")
    wait_listening(args.host, ports, 5.0, None)
    if args.gen_cpu in os.sched_getaffinity(args.attach):
        print(
            f"warning: router {args.attach} may run on CPU {args.gen_cpu} with the generator; "
            "pin it elsewhere (e.g. taskset -acp 0 PID)",
            file=sys.stderr,
        )
    return Router(args.attach, args.host, args.rs_port or 0, args.ws_port or 0)


def median(runs: list[Figures]) -> Figures:
    """The median of each figure over the runs (None when any run lacks it)."""
    out: Figures = {}
    for key in runs[0]:
        values = [r[key] for r in runs]
        known = [v for v in values if v is not None]
        out[key] = statistics.median(known) if len(known) == len(values) else None
    return out


def fmt(value: float | None, spec: str) -> str:
    return "-" if value is None or math.isnan(value) else spec.format(value)


def target_mark(scenario: Scenario, figures: Figures, serializer: str) -> str:
    cost = figures.get("router_us_per_op")
    if scenario.target_us is None or serializer != "msgpack" or cost is None:
        return ""
    return f"≤{scenario.target_us:g} {'ok' if cost <= scenario.target_us else 'MISS'}"


def table(rows: list[tuple[Scenario, Figures | None, str]], serializer: str) -> str:
    header = ["scenario", *(h for _, h, _ in COLUMNS), "target"]
    lines = [header]
    for sc, fig, error in rows:
        if fig is None:
            lines.append([sc.name, f"FAILED: {error:.60}", *[""] * len(COLUMNS)])
            continue
        cells = [fmt(fig[key], spec) for key, _, spec in COLUMNS]
        lines.append([sc.name, *cells, target_mark(sc, fig, serializer)])
    widths = [max(len(line[i]) for line in lines if len(line) > i) for i in range(len(header))]
    widths[1] = max(len(header[1]), min(widths[1], 12))
    return "\n".join(
        "  ".join(
            c.ljust(w) if i in (0, len(header) - 1) else c.rjust(w)
            for i, (c, w) in enumerate(zip(line, widths, strict=False))
        ).rstrip()
        for line in lines
    )


def run_scenario(sc: Scenario, args: argparse.Namespace, router: Router) -> dict[str, Any]:
    """All repeats of one scenario; stops at the first failed run."""
    codec = get_codec(args.serializer)
    target = Target(
        args.host,
        router.rawsocket_port or None,
        router.websocket_port or None,
        args.ws_path,
        args.realm,
    )
    result: dict[str, Any] = {"description": sc.description, "runs": [], "warnings": []}
    for i in range(args.repeat):
        try:
            router.check()
            m = measure(
                sc,
                target,
                codec,
                warmup=args.warmup,
                duration=args.duration,
                router_cpu=router.cpu_seconds,
                stall_timeout=args.stall_timeout,
            )
        except BenchError as exc:
            result["error"] = str(exc)
            print(f"{sc.name} run {i + 1}: FAILED: {exc}", file=sys.stderr)
            break
        fig = m.figures()
        result["runs"].append({**fig, "ops": m.ops, "seconds": m.seconds})
        other = fig["other_cpu_pct"]
        if other is not None and other > NOISE_PCT:
            m.warnings.append(
                f"other programs kept the CPUs {other:.0f}% busy during this run: "
                "its figures are suspect (run on a quiet machine)"
            )
        result["warnings"] += m.warnings
        cells = ", ".join(f"{h} {fmt(fig[k], s)}" for k, h, s in COLUMNS)
        print(f"{sc.name} run {i + 1}/{args.repeat}: {cells}", file=sys.stderr, flush=True)
        for w in m.warnings:
            print(f"  warning: {w}", file=sys.stderr)
    if result["runs"]:
        result["median"] = median([{k: r[k] for k, _, _ in COLUMNS} for r in result["runs"]])
    return result


def git_revision() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=False,
            cwd=RESULTS_DIR.parent,
        )
    except OSError:
        return None
    return out.stdout.strip() or None


def router_version(args: argparse.Namespace) -> str | None:
    """``serouter --version`` of the router the default command starts (None otherwise)."""
    if args.router_cmd is not None or args.attach is not None:
        return None
    try:
        out = subprocess.run(
            [sys.executable, "-m", "serouter", "--version"],
            capture_output=True,
            text=True,
            check=False,
            timeout=30,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None


def save(args: argparse.Namespace, report: dict[str, Any]) -> Path | None:
    if args.no_save:
        return None
    path = args.output or RESULTS_DIR / time.strftime("%Y%m%dT%H%M%S.json")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    return path


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.list:
        for sc in SCENARIOS.values():
            print(f"{sc.name:20} {sc.description}")
        return 0
    scenarios = select_scenarios(args)
    if (os.cpu_count() or 1) < 2:
        print("warning: fewer than 2 CPUs; router and generator will share one", file=sys.stderr)
    pin(0, None if args.gen_cpu < 0 else args.gen_cpu)
    if args.nice is not None:  # before the router starts: it inherits the value
        try:
            os.setpriority(os.PRIO_PROCESS, 0, args.nice)
        except PermissionError:
            raise SystemExit(f"--nice {args.nice}: not permitted") from None
    report: dict[str, Any] = {
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "git": git_revision(),
        "python": sys.version.split()[0],
        "router_version": router_version(args),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "scenarios": {},
    }
    try:
        router = open_router(args)
    except BenchError as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 2
    rows: list[tuple[Scenario, Figures | None, str]] = []
    try:
        report["router"] = {"pid": router.pid, "command": router.command}
        for sc in scenarios:
            result = run_scenario(sc, args, router)
            report["scenarios"][sc.name] = result
            rows.append((sc, result.get("median"), result.get("error", "")))
        report["router"]["log_problems"] = router.log_problems()[:100]
    finally:
        router.stop()
    print(
        f"\nserializer {args.serializer}, warm-up {args.warmup:g} s, window {args.duration:g} s, "
        f"median of {args.repeat}; router pid {router.pid}\n"
    )
    print(table(rows, args.serializer))
    for sc, fig, error in rows:
        if fig is None:
            print(f"\n{sc.name} failed: {error}")
    problems = report["router"]["log_problems"]
    if problems:
        print(f"\nrouter log: {len(problems)} error-looking lines, first: {problems[0]}")
    path = save(args, report)
    if path is not None:
        print(f"\nresults: {path}")
    return 1 if any(fig is None for _, fig, _ in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
