"""The ``serouter`` command: run, check-config, --version.

Each step is a small function (parse options -> load config -> build daemon -> run) so the
tests drive them without a terminal; only :func:`main` touches the process and the reactor.
"""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Sequence
from typing import Any, TextIO

from twisted.logger import (
    FilteringLogObserver,
    LogLevel,
    LogLevelFilterPredicate,
    globalLogBeginner,
)

from serouter import __version__
from serouter.config import Config, ConfigError, load_config
from serouter.observability import LOG_FORMATS, log_observer
from serouter.service import RouterDaemon, install_shutdown
from serouter.transport.reactor import install_reactor

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
    sub.choices["run"].add_argument(
        "--log-format", choices=LOG_FORMATS, default="text",
        help="text (default), or json: one object per line with the event's fields",
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


def start_logging(level: str, out: TextIO, log_format: str = "text") -> LogLevelFilterPredicate:
    """Log to ``out`` from ``level`` up; the predicate changes the level later (reload)."""
    predicate = LogLevelFilterPredicate(defaultLogLevel=LOG_LEVELS[level])
    observer = FilteringLogObserver(log_observer(log_format, out), [predicate])
    globalLogBeginner.beginLoggingTo([observer], redirectStandardIO=False)
    return predicate


def run(
    config: Config, reactor: Any, levels: LogLevelFilterPredicate | None = None
) -> int:
    """Start the daemon on ``reactor`` and run until a signal stops it.

    ``levels``: the log filter a reload may set to a new [router] log_level (None: the level
    was fixed on the command line)."""
    daemon = RouterDaemon(config, reactor)
    if levels is not None:
        def set_level(name: str) -> None:
            levels.setLogLevelForNamespace("", LOG_LEVELS[name])

        daemon.set_log_level = set_level
    status = {"code": 0}

    def failed(failure: Any) -> None:
        message = failure.getErrorMessage()
        print(f"serouter: cannot start: {message}", file=sys.stderr)
        daemon.notifier.status(f"cannot start: {message}")
        status["code"] = 1
        reactor.stop()

    def started() -> None:
        d = daemon.start()
        d.addCallback(lambda _: install_shutdown(reactor, daemon))
        d.addErrback(failed)

    reactor.callWhenRunning(started)
    reactor.run()
    # Shut down already: a repeated SIGTERM (an impatient supervisor) must not turn the
    # orderly exit into death by signal while the interpreter winds down.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
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
    levels = start_logging(args.log_level or config.router.log_level, sys.stdout,
                           args.log_format)
    # Installed only once we know we are going to run.
    return run(config, install_reactor(), None if args.log_level else levels)


if __name__ == "__main__":
    sys.exit(main())
