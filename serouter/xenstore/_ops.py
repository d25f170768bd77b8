"""The requests every XenStore handle offers: the client itself and a transaction.

Each method checks its path the way xenstored would (a bad one fails with ``EINVAL`` without
a round trip), sends one request through ``_call`` and turns the reply payload into a value.
Values are bytes on the way out; ``write`` takes ``str`` too (UTF-8).
"""

from __future__ import annotations

from collections.abc import Sequence

from twisted.internet import defer

from serouter.xenstore._errors import XenStoreError
from serouter.xenstore._wire import Op, Permission, is_valid_path, nul_strings

_PART_RESTARTS = 8


def _ok(_: bytes) -> None:
    return None


class Operations:
    """read, write, mkdir, rm, directory, get_perms, set_perms, get_domain_path."""

    def _call(self, op: Op, payload: bytes, path: str | None) -> defer.Deferred[bytes]:
        raise NotImplementedError

    def _on_path(
        self, op: Op, path: str, extra: bytes = b"", special: bool = False
    ) -> defer.Deferred[bytes]:
        if not is_valid_path(path, special):
            return defer.fail(XenStoreError("EINVAL", path))
        return self._call(op, path.encode("ascii") + b"\0" + extra, path)

    def read(self, path: str) -> defer.Deferred[bytes]:
        """The value at ``path`` (ENOENT if absent; EACCES if absent or unreadable to us)."""
        return self._on_path(Op.READ, path)

    def write(self, path: str, value: bytes | str) -> defer.Deferred[None]:
        """Store ``value``, creating missing parents (which inherit their parent's perms)."""
        data = value.encode() if isinstance(value, str) else value
        return self._on_path(Op.WRITE, path, data).addCallback(_ok)

    def mkdir(self, path: str) -> defer.Deferred[None]:
        return self._on_path(Op.MKDIR, path).addCallback(_ok)

    def rm(self, path: str) -> defer.Deferred[None]:
        """Remove ``path`` and everything below; fine if absent, ENOENT if its parent is too."""
        return self._on_path(Op.RM, path).addCallback(_ok)

    def directory(self, path: str) -> defer.Deferred[list[str]]:
        """The names of the children (not full paths), however many there are."""
        return defer.Deferred.fromCoroutine(self._directory(path))

    async def _directory(self, path: str) -> list[str]:
        try:
            return nul_strings(await self._on_path(Op.DIRECTORY, path))
        except XenStoreError as error:
            if error.name != "E2BIG":  # more than one reply holds: ask part by part
                raise
        return await self._directory_parts(path)

    async def _directory_parts(self, path: str) -> list[str]:
        """DIRECTORY_PART from offset 0 on, restarting if the node changes in between."""
        for _ in range(_PART_RESTARTS):
            listing, generation = b"", None
            while True:
                reply = await self._on_path(Op.DIRECTORY_PART, path, b"%d\0" % len(listing))
                this_generation, _, part = reply.partition(b"\0")
                if generation is not None and this_generation != generation:
                    break
                generation = this_generation
                if part == b"\0" or part.endswith(b"\0\0"):  # an empty name ends the list
                    return nul_strings(listing + part[:-1])
                if not part:
                    raise XenStoreError("EIO", path)
                listing += part
        raise XenStoreError("EAGAIN", path)

    def get_perms(self, path: str) -> defer.Deferred[list[Permission]]:
        def parse(payload: bytes) -> list[Permission]:
            return [Permission.parse(text) for text in nul_strings(payload)]

        return self._on_path(Op.GET_PERMS, path, special=True).addCallback(parse)

    def set_perms(self, path: str, perms: Sequence[Permission | str]) -> defer.Deferred[None]:
        """Replace the permissions (the first entry is the owner; see ``Permission``)."""
        try:
            entries = [p if isinstance(p, Permission) else Permission.parse(p) for p in perms]
        except ValueError:
            return defer.fail(XenStoreError("EINVAL", path))
        if not entries:
            return defer.fail(XenStoreError("EINVAL", path))
        extra = b"".join(str(entry).encode() + b"\0" for entry in entries)
        return self._on_path(Op.SET_PERMS, path, extra, special=True).addCallback(_ok)

    def get_domain_path(self, domid: int) -> defer.Deferred[str]:
        def parse(payload: bytes) -> str:
            return payload.rstrip(b"\0").decode("ascii", "replace")

        return self._call(Op.GET_DOMAIN_PATH, b"%d\0" % domid, None).addCallback(parse)
