"""The ``serouter`` command: run, check-config, --version.

Each step is a small function (parse options -> load config -> build daemon -> run) so the
tests drive them without a terminal; only :func:`main` touches the process and the reactor.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any, TextIO

from twisted.logger import (
    FilteringLogObserver,
    LogLevel,
    LogLevelFilterPredicate,
    globalLogBeginner,
    textFileLogObserver,
)

from serouter import __version__
from serouter.config import Config, ConfigError, load_config
from serouter.service import RouterDaemon, install_shutdown

LOG_LEVELS = {
    "debug": LogLevel.debug,
    "info": LogLevel.info,
    "warn": LogLevel.warn,
    "error": LogLevel.error,
    "critical": LogLevel.critical,
}


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="serouter", description="A security-enhanced WAMP router daemon."
    )
    parser.add_argument("--version", action="version", version=f"serouter {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, text in (("run", "run the router"), ("check-config", "validate a configuration")):
        p = sub.add_parser(name, help=text)
        p.add_argument("-c", "--config", help="TOML file (default: the embedded default)")
    sub.choices["run"].add_argument(
        "--log-level", choices=sorted(LOG_LEVELS), help="overrides [router] log_level"
    )
    return parser.parse_args(argv)


def check_config(path: str | None, out: TextIO) -> int:
    """Exit status 0 if the configuration loads, else 1 with the reason."""
    try:
        config = load_config(path)
    except ConfigError as e:
        print(f"serouter: {e}", file=out)
        return 1
    print(
        f"{config.source}: OK ({len(config.realms)} realms, {len(config.listeners)} listeners)",
        file=out,
    )
    return 0


def start_logging(level: str, out: TextIO) -> None:
    predicate = LogLevelFilterPredicate(defaultLogLevel=LOG_LEVELS[level])
    observer = FilteringLogObserver(textFileLogObserver(out), [predicate])
    globalLogBeginner.beginLoggingTo([observer], redirectStandardIO=False)


def run(config: Config, reactor: Any) -> int:
    """Start the daemon on ``reactor`` and run until a signal stops it."""
    daemon = RouterDaemon(config, reactor)
    status = {"code": 0}

    def failed(failure: Any) -> None:
        print(f"serouter: cannot start: {failure.getErrorMessage()}", file=sys.stderr)
        status["code"] = 1
        reactor.stop()

    def started() -> None:
        d = daemon.start()
        d.addCallback(lambda _: install_shutdown(reactor, daemon))
        d.addErrback(failed)

    reactor.callWhenRunning(started)
    reactor.run()
    return status["code"]


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if args.command == "check-config":
        return check_config(args.config, sys.stdout)
    try:
        config = load_config(args.config)
    except ConfigError as e:
        print(f"serouter: {e}", file=sys.stderr)
        return 1
    start_logging(args.log_level or config.router.log_level, sys.stdout)
    # Importing the reactor installs it: only once we know we are going to run.
    from twisted.internet import reactor  # noqa: PLC0415

    return run(config, reactor)


if __name__ == "__main__":
    sys.exit(main())
