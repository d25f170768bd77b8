"""serouter: a security-enhanced WAMP router daemon.

The core (``serouter.core``) is free of I/O; transports (``serouter.transport``) and the service
wiring (``serouter.service``) are the only parts that touch the reactor.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("serouter")
except PackageNotFoundError:  # running from a checkout without installation
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
