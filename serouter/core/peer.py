"""The seam between the core and a transport: what a session needs from its connection.

A transport implements :class:`Peer`; the core calls it and never touches sockets. Tests use an
in-memory peer that records what it was sent.
"""

from dataclasses import dataclass, field
from typing import Protocol

from serouter.core.messages import Outgoing


class Peer(Protocol):
    """One connection, as the core sees it."""

    def send(self, message: Outgoing) -> str | None:
        """Serialize and queue ``message`` for the peer (never blocks, never raises).

        None when sent. Otherwise nothing was sent and the answer is the WAMP error URI that
        says why: ``wamp.error.payload_size_exceeded`` (over the peer's limit) or
        ``wamp.error.invalid_argument`` (the payload cannot be expressed in the peer's
        serialization, e.g. NaN or a binary map key for JSON). The realm then answers
        whoever waits for the message.
        """

    def close(self) -> None:
        """Close the connection once what was queued has been written."""


@dataclass(frozen=True, slots=True)
class TransportInfo:
    """What the transport knows about the peer: used for logs, the meta API and, later, labels.

    Only fields the kernel (or hypervisor) vouches for may ever feed an access decision:
    ``peer_uid``/``peer_gid``/``peer_pid`` come from SO_PEERCRED, never from the client;
    ``peer_domain`` is the Argo peer's domain id, stamped by Xen, and ``peer_domain_name`` /
    ``peer_domain_uuid`` what dom0's XenStore says of that domain (set only where no other
    domain could have written them).
    """

    kind: str  # "websocket" | "rawsocket"
    serializer: str  # "json" | "msgpack" | "cbor"
    peer: str  # e.g. "tcp4:127.0.0.1:53122", "unix"
    listener: str = ""  # the listener's endpoint string
    secure: bool = False  # TLS
    peer_uid: int | None = None
    peer_gid: int | None = None
    peer_pid: int | None = None
    peer_context: str | None = None  # SO_PEERSEC, read only when SELinux is enabled
    # DER of the TLS client certificate; the TLS layer asks for one (and verifies it against
    # the CA) only on listeners configured with tls_ca, so a certificate here was verified
    peer_certificate: bytes | None = None
    listener_label: str | None = None  # the listener's configured default label
    peer_domain: int | None = None  # Argo
    peer_domain_name: str | None = None
    peer_domain_uuid: str | None = None
    extra: dict[str, str] = field(default_factory=dict)
