"""Endpoint strings in the configuration: checked here, bound only by serouter.service.

Twisted parses them; this adds what its parser cannot know: Linux abstract Unix sockets written
as "unix:@name", and limits that would otherwise fail only at bind time. Parsing happens
against a ``MemoryReactor``: nothing here may bind, listen or touch the global reactor.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from typing import Final

from twisted.internet.endpoints import clientFromString, serverFromString
from twisted.internet.testing import MemoryReactor

from serouter.argo import register_endpoint_plugins
from serouter.config._rules import _Fault, _has_control, _quoted, _show, _text

# sockaddr_un.sun_path is 108 bytes: a path needs its terminating NUL, an abstract name its
# leading one, so both get 107 bytes of their own (checked against the kernel in the tests).
_UNIX_ADDRESS_MAX: Final = 107
_PORT_TYPES: Final = ("tcp", "ssl")


def _split_endpoint(endpoint: str) -> tuple[list[str], dict[str, str]]:
    """Split as Twisted's ``endpoints._parse`` does: ``:`` ends a field, its first ``=`` names
    it, and a backslash makes the next character literal."""
    args: list[str] = []
    kw: dict[str, str] = {}
    parts = [""]
    chars = iter(endpoint)
    for char in chars:
        if char == "\\":
            escaped = next(chars, None)
            if escaped is None:
                raise _Fault(f"ends in a lone backslash: {_show(endpoint)}")
            parts[-1] += escaped
        elif char == ":":
            _add_part(parts, args, kw)
            parts = [""]
        elif char == "=" and len(parts) == 1:
            parts.append("")
        else:
            parts[-1] += char
    _add_part(parts, args, kw)
    return args, kw


def _add_part(parts: list[str], args: list[str], kw: dict[str, str]) -> None:
    if len(parts) == 1:
        args.append(parts[0])
    else:
        kw[parts[0]] = parts[1]


def _escape(text: str) -> str:
    return re.sub(r"([\\:=])", r"\\\1", text)


def _check_port(args: list[str], kw: dict[str, str]) -> None:
    # Twisted takes any int here and only the bind fails; a non-int it reports itself
    port = args[1] if len(args) > 1 else kw.get("port", "")
    try:
        number = int(port)
    except ValueError:
        return
    if not 0 <= number <= 65535:
        raise _Fault(f"port {number} is out of range 0..65535")


def _check_unix_path(path: str) -> None:
    if not path:
        raise _Fault("the Unix socket path is empty")
    if len(os.fsencode(path)) > _UNIX_ADDRESS_MAX:
        raise _Fault(f"the Unix socket path is longer than {_UNIX_ADDRESS_MAX} bytes")


def _abstract_form(name: str, args: list[str], kw: dict[str, str]) -> str:
    """Twisted's form of ``unix:@name...``: the address "\\0name", and no lock file.

    Twisted binds a NUL-prefixed address in the abstract namespace and skips the chmod, but
    with its default ``lockfile=1`` the listen fails (a symlink named "\\0name.lock").
    """
    if not name:
        raise _Fault("the abstract Unix socket name after @ is empty")
    if len(os.fsencode(name)) > _UNIX_ADDRESS_MAX:
        raise _Fault(f"the abstract Unix socket name is longer than {_UNIX_ADDRESS_MAX} bytes")
    if len(args) > 2 or "address" in kw:
        raise _Fault("write an abstract socket as unix:@name, options as key=value")
    if "mode" in kw:
        # a silent no-op here would let an admin believe access is restricted
        raise _Fault(
            "an abstract Unix socket has no file permissions (any process in the network "
            "namespace may connect): remove mode"
        )
    if kw.get("lockfile", "0") != "0":
        raise _Fault("an abstract Unix socket cannot have a lock file: remove lockfile")
    options = "".join(f":{_escape(k)}={_escape(v)}" for k, v in kw.items() if k != "lockfile")
    return f"unix:{_escape(chr(0) + name)}{options}:lockfile=0"


_SYSTEMD_DOMAINS: Final = ("UNIX", "INET", "INET6")


def _check_systemd(args: list[str], kw: dict[str, str]) -> None:
    """``systemd:domain=UNIX:index=0`` or ``:name=N``: a socket systemd passes (LISTEN_FDS).

    The socket exists only in the daemon systemd started, so here only the form is checked;
    a socket systemd did not pass refuses the start (serouter.service).
    """
    if len(args) > 1 or set(kw) - {"domain", "index", "name"}:
        raise _Fault("a systemd socket is systemd:domain=UNIX|INET|INET6 with index=N (its "
                     "place in LISTEN_FDS) or name=NAME (FileDescriptorName=), nothing else")
    if kw.get("domain") not in _SYSTEMD_DOMAINS:
        raise _Fault(f"systemd: needs domain= one of {_quoted(_SYSTEMD_DOMAINS)}")
    if ("index" in kw) == ("name" in kw):
        raise _Fault("systemd: names its socket by index= or by name=, exactly one of them")
    if "index" in kw and not kw["index"].isdigit():
        raise _Fault(f"systemd: index= must be a number, got {_show(kw['index'])}")
    if "name" in kw and not kw["name"]:
        raise _Fault("systemd: name= is empty")


def _twisted_form(endpoint: str) -> str:
    """The endpoint string to hand Twisted, after the checks its parser does not make."""
    args, kw = _split_endpoint(endpoint)
    # as in Twisted: plugin types (tcp6) match in any case, the built-in ones only in lower case
    if args[0] in _PORT_TYPES or args[0].lower() == "tcp6":
        _check_port(args, kw)
    if args[0] == "systemd":
        _check_systemd(args, kw)
    if args[0] != "unix":
        return endpoint
    address = args[1] if len(args) > 1 else kw.get("address", "")
    if address.startswith("@"):
        return _abstract_form(address[1:], args, kw)
    _check_unix_path(address)
    return endpoint


def _endpoint(value: object) -> str:
    endpoint = _text(value)
    if _has_control(endpoint):
        raise _Fault(
            "must not contain control characters (write an abstract Unix socket as "
            f"unix:@name), got {_show(value)}"
        )
    description = _twisted_form(endpoint)
    if description.startswith("systemd:"):
        return endpoint  # Twisted's parser would look for the socket, passed only at run time
    _twisted_parses(serverFromString, description, endpoint, "")
    return endpoint


def _client_endpoint(value: object) -> str:
    """A Twisted client endpoint string: how to reach the name server or a router."""
    endpoint = _text(value)
    if _has_control(endpoint):
        raise _Fault(f"must not contain control characters, got {_show(value)}")
    _twisted_parses(clientFromString, endpoint, endpoint, " as a client endpoint")
    return endpoint


def _twisted_parses(
    parse: Callable[[MemoryReactor, str], object], description: str, endpoint: str, role: str
) -> None:
    """Let Twisted's ``parse`` (server- or clientFromString) judge ``description``."""
    register_endpoint_plugins()  # argo: (serouter.argo), also from an editable install
    try:
        # a MemoryReactor: parse (and, for ssl, load the key and certificate) without listening
        parse(MemoryReactor(), description)  # type: ignore[no-untyped-call]
    except Exception as error:  # parsers raise ValueError, TypeError, OSError, KeyError, ...
        raise _Fault(
            f"Twisted refuses {_show(endpoint)}{role}: {type(error).__name__}: {error}"
        ) from None


def split_endpoint(endpoint: str) -> tuple[list[str], dict[str, str]]:
    """An endpoint string's positional and keyword fields, unescaped as Twisted does."""
    try:
        return _split_endpoint(endpoint)
    except _Fault as fault:
        raise ValueError(fault.reason) from None
