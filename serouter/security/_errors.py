"""The one error of the security package."""


class SecurityError(Exception):
    """The access control cannot be set up as configured: the router refuses to start (or a
    reload is refused and the running policy stays). The message names the file and line, or
    the configuration key, and what is wrong."""
