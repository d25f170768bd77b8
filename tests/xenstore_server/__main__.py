"""``python -m tests.xenstored``: the test xenstored as a process.

    python -m tests.xenstored --socket DIR/socket --domain-socket 1=DIR/d1 \\
        --domain 1=guest1:0d4c...-uuid --write /some/path=value

``--socket`` is dom0's (privileged); each ``--domain-socket ID=PATH`` serves domain ID.
``--domain ID=NAME[:UUID]`` seeds what libxl writes for a domain (dom0 is seeded as
``Domain-0``); ``--write PATH=VALUE`` writes as dom0. Prints ``ready`` once every socket
accepts connections; stops on SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from tests.xenstore_server._server import XenStoreServer
from tests.xenstore_server._store import Store


def _pair(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key, value


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tests.xenstored", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--socket", required=True, help="dom0's socket")
    parser.add_argument("--domain-socket", type=_pair, action="append", default=[],
                        metavar="ID=PATH", help="a socket whose connections are domain ID")
    parser.add_argument("--domain", type=_pair, action="append", default=[],
                        metavar="ID=NAME[:UUID]", help="seed a domain's name and vm entries")
    parser.add_argument("--write", type=_pair, action="append", default=[],
                        metavar="PATH=VALUE", help="write a value as dom0")
    return parser.parse_args(argv)


def build(args: argparse.Namespace) -> Store:
    store = Store()
    store.seed_domain(0, "Domain-0", None)
    for domid, spec in args.domain:
        name, _, uuid = spec.partition(":")
        store.seed_domain(int(domid), name, uuid or None)
    for path, value in args.write:
        store.write(path, value)
    return store


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    from twisted.internet import reactor

    server = XenStoreServer(reactor, build(args))
    server.listen(args.socket, 0)
    for domid, path in args.domain_socket:
        server.listen(path, int(domid))
    reactor.callWhenRunning(lambda: print("ready", flush=True))
    reactor.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
