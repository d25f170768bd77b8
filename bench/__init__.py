"""Load generator and benchmark for the serouter WAMP router (``python -m bench``).

The generator is a minimal WAMP peer on non-blocking sockets (no Twisted, no Autobahn) so that
its own CPU cost per message stays far below the router's; see ``bench/README.md``. It must never
be imported by the router package.
"""
