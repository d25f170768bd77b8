"""The two views requests work on: the database itself, or one transaction's copy of it.

A transaction copies each node on first access and remembers its generation; at commit, any
node it touched that changed meanwhile makes the commit fail with EAGAIN (as current xenstored
does: unrelated changes do not conflict), and its watch events fire only then.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tests.xenstore_server._tree import Node, Perms
from tests.xenstore_server._wire import XsError

if TYPE_CHECKING:
    from tests.xenstore_server._store import Store


class Live:
    """The database itself as a view: changes apply and watches fire at once."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def get(self, path: str) -> Node | None:
        return self.store.nodes.get(path)

    def put(self, path: str, node: Node) -> None:
        node.generation = self.store.bump()
        self.store.nodes[path] = node

    def delete(self, path: str) -> None:
        self.store.nodes.pop(path, None)

    def fire(self, path: str, exact: bool, old_perms: Perms | None) -> None:
        self.store.fire(path, exact, old_perms)


class Transaction:
    """A view that copies nodes on first access, remembering their generation for the commit."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.local: dict[str, Node | None] = {}
        self.seen: dict[str, int] = {}
        self.written: set[str] = set()
        self.events: list[tuple[str, bool, Perms | None]] = []

    def get(self, path: str) -> Node | None:
        if path not in self.local:
            node = self.store.nodes.get(path)
            self.seen[path] = node.generation if node else -1
            self.local[path] = node.copy() if node else None
        return self.local[path]

    def put(self, path: str, node: Node) -> None:
        self.get(path)
        self.local[path] = node
        self.written.add(path)

    def delete(self, path: str) -> None:
        self.get(path)
        self.local[path] = None
        self.written.add(path)

    def fire(self, path: str, exact: bool, old_perms: Perms | None) -> None:
        if (path, exact, old_perms) not in self.events:
            self.events.append((path, exact, old_perms))

    def commit(self) -> None:
        """Apply the changes, or EAGAIN if a node this transaction touched changed meanwhile."""
        for path, generation in self.seen.items():
            live = self.store.nodes.get(path)
            if (live.generation if live else -1) != generation:
                raise XsError("EAGAIN")
        for path in self.written:
            node = self.local[path]
            if node is None:
                self.store.nodes.pop(path, None)
            else:
                node.generation = self.store.bump()
                self.store.nodes[path] = node
        for event in self.events:
            self.store.fire(*event)


View = Live | Transaction
