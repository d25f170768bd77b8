"""The router core: sessions, realms, dealer, broker and URI matching.

It takes parsed WAMP messages and hands outgoing messages to peers through the small
:class:`serouter.core.peer.Peer` interface. It must never import ``twisted.internet``, sockets
or SELinux code: transports and the service wiring do I/O, the access check is plugged in
through :mod:`serouter.core.access`.
"""
