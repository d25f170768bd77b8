"""What a XenStore request can fail with: a refusal, no answer, or a broken peer."""

from __future__ import annotations

import errno
import os


class XenStoreError(Exception):
    """xenstored refused a request; ``name`` is the errno name it sent (``ENOENT``, ``EACCES``,
    ``EAGAIN``...), ``errno`` its number here, ``path`` the path asked about, if any."""

    def __init__(self, name: str, path: str | None = None) -> None:
        self.name = name
        self.path = path
        self.errno: int | None = getattr(errno, name, None)
        reason = os.strerror(self.errno) if self.errno is not None else "unknown error"
        super().__init__(f"{name} ({reason})" + (f": {path}" if path else ""))


class XenStoreUnavailable(Exception):
    """No answer: not connected in time, the connection went with the request in flight (a
    write may or may not have happened), or the client was stopped."""


class XenStoreProtocolError(Exception):
    """The other end broke the wire protocol (an oversized or malformed message)."""
