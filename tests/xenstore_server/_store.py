"""The test xenstored's database, sessions, watches and transactions, with no I/O.

A ``Session`` is one connection; the store never learns a connection's domain from the
connection's own words: whoever opens the session (the listening socket it came in on) says.
``handle`` takes one request and delivers the reply and any watch events through the
sessions' ``deliver`` callbacks, in xenstored's order: events a request causes go out before
its reply, except WATCH, whose acknowledgement precedes the event it fires at once.

Semantics follow tools/xenstored (C): ``errno_from_parents`` (a missing node reads EACCES
unless the caller may see the nearest existing ancestor), ``construct_node`` (new nodes
inherit the parent's permissions; unprivileged creators own what they create), per-node
generation counts for transaction conflicts (EAGAIN), watch events filtered by
``watch_permitted`` (the node, its old permissions or its parent must be readable).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from tests.xenstore_server._tree import (
    DOMID_MAX,
    OWNER,
    READ,
    WRITE,
    Node,
    Perm,
    Perms,
    access_for,
    canonical,
    is_child,
    parent_of,
    parse_domid,
)
from tests.xenstore_server._views import Live, Transaction, View
from tests.xenstore_server._wire import PAYLOAD_MAX, Op, XsError, packet

OK = b"OK\0"
SPECIAL = ("@introduceDomain", "@releaseDomain")
_PRIVILEGED_OPS = frozenset({
    Op.CONTROL, Op.INTRODUCE, Op.RELEASE, Op.IS_DOMAIN_INTRODUCED, Op.RESUME, Op.SET_TARGET,
})
_NO_TX_OPS = frozenset({Op.WATCH, Op.UNWATCH})


@dataclass
class Watch:
    path: str  # canonical
    token: str
    prefix: int  # characters cut from event paths: relative watches get relative events


@dataclass
class Session:
    """One connection: its domain (decided by the server, never by the peer) and state."""

    domid: int
    privileged: bool
    deliver: Callable[[bytes], None]
    close: Callable[[], None]
    watches: list[Watch] = field(default_factory=list)
    transactions: dict[int, Transaction] = field(default_factory=dict)
    next_tx: int = 1

    def access(self, perms: Perms) -> int:
        return access_for(self.domid, self.privileged, perms)




def _matches(watch: Watch, path: str, exact: bool) -> bool:
    return watch.path == path if exact else is_child(path, watch.path)


def _one_arg(payload: bytes) -> str:
    """The single nul-terminated string of a request (xenstored ``onearg``)."""
    if not payload or payload.find(b"\0") != len(payload) - 1:
        raise XsError("EINVAL")
    return payload[:-1].decode("latin-1")


def _strings(payload: bytes) -> list[str]:
    """Every nul-terminated string; trailing bytes without a nul are ignored (``get_strings``)."""
    return [s.decode("latin-1") for s in payload.split(b"\0")[:-1]]


class Store:
    """The database, the connected sessions and the introduced domains."""

    def __init__(self) -> None:
        self.nodes: dict[str, Node] = {}
        self.sessions: list[Session] = []
        self.introduced: set[int] = set()
        self._generation = 0
        self._live = Live(self)
        dom0_only = (Perm(0, 0),)
        for path in ("/", "/tool", "/tool/xenstored", *SPECIAL):
            self.nodes[path] = Node(b"", dom0_only, generation=self.bump())
        self.nodes["/"].children.append("tool")
        self.nodes["/tool"].children.append("xenstored")
        self._handlers: dict[int, Callable[[Session, View, bytes], bytes]] = {
            Op.READ: self._read, Op.DIRECTORY: self._directory,
            Op.DIRECTORY_PART: self._directory_part, Op.GET_PERMS: self._get_perms,
            Op.WRITE: self._write, Op.MKDIR: self._mkdir, Op.RM: self._rm,
            Op.SET_PERMS: self._set_perms, Op.WATCH: self._watch, Op.UNWATCH: self._unwatch,
            Op.TRANSACTION_START: self._tx_start, Op.TRANSACTION_END: self._tx_end,
            Op.GET_DOMAIN_PATH: self._domain_path, Op.INTRODUCE: self._introduce,
            Op.RELEASE: self._release, Op.IS_DOMAIN_INTRODUCED: self._is_introduced,
            Op.RESET_WATCHES: self._reset_watches,
        }
        self._system = Session(0, True, lambda _: None, lambda: None)

    def bump(self) -> int:
        self._generation += 1
        return self._generation

    # -- sessions ----------------------------------------------------------------------------

    def open_session(
        self, domid: int, deliver: Callable[[bytes], None], close: Callable[[], None]
    ) -> Session:
        """A connection from ``domid``; dom0 is privileged, every other domain is not."""
        session = Session(domid, domid == 0, deliver, close)
        self.sessions.append(session)
        return session

    def close_session(self, session: Session) -> None:
        if session in self.sessions:
            self.sessions.remove(session)

    def handle(self, s: Session, op: int, req_id: int, tx_id: int, payload: bytes) -> None:
        """Process one request; the reply and the events it causes go out via ``deliver``."""
        try:
            reply = self._dispatch(s, op, tx_id, payload)
        except XsError as error:
            s.deliver(packet(Op.ERROR, req_id, tx_id, error.name.encode() + b"\0"))
            return
        s.deliver(packet(op, req_id, tx_id, reply))
        if op == Op.WATCH:  # "We fire once up front": after the acknowledgement
            watch = s.watches[-1]
            self._send_event(s, watch, watch.path)

    def _dispatch(self, s: Session, op: int, tx_id: int, payload: bytes) -> bytes:
        handler = self._handlers.get(op)
        if handler is None:
            raise XsError("ENOSYS")
        if op in _PRIVILEGED_OPS and not s.privileged:
            raise XsError("EACCES")
        view: View = self._live
        if op not in _NO_TX_OPS and tx_id != 0:
            if tx_id not in s.transactions:
                raise XsError("ENOENT")
            view = s.transactions[tx_id]
        reply = handler(s, view, payload)
        if len(reply) > PAYLOAD_MAX:
            raise XsError("E2BIG")
        return reply

    # -- what the server and tests call directly ---------------------------------------------

    def write(self, path: str, value: bytes | str, perms: Perms | None = None) -> None:
        """Write as dom0 (watches fire), then set ``perms`` if given."""
        data = value.encode() if isinstance(value, str) else value
        self._write(self._system, self._live, path.encode() + b"\0" + data)
        if perms is not None:
            self.set_perms(path, perms)

    def set_perms(self, path: str, perms: Perms) -> None:
        args = "".join(f"{p}\0" for p in (path, *perms)).encode()
        self._set_perms(self._system, self._live, args)

    def rm(self, path: str) -> None:
        self._rm(self._system, self._live, path.encode() + b"\0")

    def read(self, path: str) -> bytes | None:
        node = self.nodes.get(path)
        return None if node is None else node.value

    def seed_domain(self, domid: int, name: str, uuid: str | None) -> None:
        """The entries libxl writes for a domain: ``name``, ``domid``, ``vm`` and ``/vm/<uuid>``.

        ``/local/domain/<domid>`` is dom0's, readable by the domain; ``data`` is the domain's.
        """
        home = f"/local/domain/{domid}"
        guest_reads = (Perm(0, 0),) if domid == 0 else (Perm(0, 0), Perm(domid, READ))
        self.write(home, "", guest_reads)
        self.write(f"{home}/name", name)
        self.write(f"{home}/domid", str(domid))
        if domid != 0:
            self.write(f"{home}/data", "", (Perm(domid, 0),))
        if uuid is not None:
            self.write(f"/vm/{uuid}", "", guest_reads)
            self.write(f"/vm/{uuid}/uuid", uuid)
            self.write(f"/vm/{uuid}/name", name)
            self.write(f"{home}/vm", f"/vm/{uuid}")

    def introduce(self, domid: int) -> None:
        self.introduced.add(domid)
        self.fire("@introduceDomain", False, None)

    def release(self, domid: int) -> None:
        """Forget the domain: its connections close and ``@releaseDomain`` fires."""
        self.introduced.discard(domid)
        for session in [s for s in self.sessions if s.domid == domid]:
            session.close()
        self.fire("@releaseDomain", False, None)

    # -- permissions and watches -------------------------------------------------------------

    def _get(self, s: Session, view: View, path: str, need: int) -> Node:
        """The node if ``s`` has ``need`` on it; else ENOENT or EACCES as xenstored decides."""
        node = view.get(path)
        if node is not None and s.access(node.perms) & need == need:
            return node
        error = "ENOENT" if node is None else "EACCES"
        name = path
        while name != "/":  # the nearest existing ancestor says whether they may know
            name = parent_of(name)
            ancestor = view.get(name)
            if ancestor is not None:
                raise XsError(error if s.access(ancestor.perms) & need else "EACCES")
        raise XsError("EACCES")

    def fire(self, path: str, exact: bool, old_perms: Perms | None) -> None:
        for s in list(self.sessions):
            watches = [w for w in s.watches if _matches(w, path, exact)]
            if watches and self._permitted(s, path, old_perms):
                for watch in watches:
                    self._send_event(s, watch, path)

    def _permitted(self, s: Session, path: str, old_perms: Perms | None) -> bool:
        if old_perms is not None and s.access(old_perms) & READ:
            return True
        node = self.nodes.get(path)
        if node is None:
            return False
        if s.access(node.perms) & READ:
            return True
        parent = self.nodes.get(parent_of(path))
        return parent is not None and bool(s.access(parent.perms) & READ)

    @staticmethod
    def _send_event(s: Session, watch: Watch, path: str) -> None:
        body = f"{path[watch.prefix:]}\0{watch.token}\0".encode("latin-1")
        if len(body) <= PAYLOAD_MAX:
            s.deliver(packet(Op.WATCH_EVENT, 0, 0, body))

    # -- requests ----------------------------------------------------------------------------

    def _read(self, s: Session, view: View, args: bytes) -> bytes:
        return self._get(s, view, canonical(_one_arg(args), s.domid), READ).value

    def _directory(self, s: Session, view: View, args: bytes) -> bytes:
        node = self._get(s, view, canonical(_one_arg(args), s.domid), READ)
        return b"".join(child.encode() + b"\0" for child in node.children)

    def _directory_part(self, s: Session, view: View, args: bytes) -> bytes:
        """Children from a byte offset, after the node's generation (for long listings)."""
        strings = _strings(args)
        if len(strings) != 2:
            raise XsError("EINVAL")
        node = self._get(s, view, canonical(strings[0], s.domid), READ)
        offset = int(strings[1]) if strings[1].isdigit() else 0
        generation = str(node.generation).encode() + b"\0"
        listing = b"".join(child.encode() + b"\0" for child in node.children)
        if offset >= len(listing):
            return generation + b"\0"
        room, end = PAYLOAD_MAX - len(generation) - 1, offset
        while end < len(listing):
            stop = listing.index(b"\0", end) + 1
            if stop - offset >= room:
                break
            end = stop
        tail = b"\0" if end == len(listing) else b""
        return generation + listing[offset:end] + tail

    def _get_perms(self, s: Session, view: View, args: bytes) -> bytes:
        node = self._get(s, view, canonical(_one_arg(args), s.domid, True), READ)
        return "".join(f"{perm}\0" for perm in node.perms).encode()

    def _write(self, s: Session, view: View, args: bytes) -> bytes:
        raw, nul, value = args.partition(b"\0")
        if not nul:
            raise XsError("EINVAL")
        path = canonical(raw.decode("latin-1"), s.domid)
        try:
            node = self._get(s, view, path, WRITE)
            old_perms: Perms | None = node.perms
        except XsError as error:
            if error.name != "ENOENT":
                raise
            node, old_perms = self._create(s, view, path), None
        node.value = value
        view.put(path, node)
        view.fire(path, False, old_perms)
        return OK

    def _mkdir(self, s: Session, view: View, args: bytes) -> bytes:
        path = canonical(_one_arg(args), s.domid)
        try:
            self._get(s, view, path, WRITE)
        except XsError as error:
            if error.name != "ENOENT":
                raise
            self._create(s, view, path)
            view.fire(path, False, None)
        return OK

    def _create(self, s: Session, view: View, path: str) -> Node:
        """Create ``path`` and missing ancestors (the caller checked write access above them)."""
        missing = [path]
        while (parent := view.get(parent_of(missing[-1]))) is None:
            missing.append(parent_of(missing[-1]))
        parent_path = parent_of(missing[-1])
        for name in reversed(missing):
            parent.children.append(name[name.rfind("/") + 1 :])
            view.put(parent_path, parent)
            perms = parent.perms
            if not s.privileged:  # "Domains own what they create"
                perms = (Perm(s.domid, perms[0].access), *perms[1:])
            node = Node(b"", perms)
            view.put(name, node)
            parent, parent_path = node, name
        return parent

    def _rm(self, s: Session, view: View, args: bytes) -> bytes:
        path = canonical(_one_arg(args), s.domid)
        try:
            self._get(s, view, path, WRITE)
        except XsError as error:
            if error.name == "ENOENT" and view.get(parent_of(path)) is not None:
                return OK  # absent is fine if the parent exists
            raise
        if path == "/":
            raise XsError("EINVAL")
        for name in self._subtree_bottom_up(view, path):
            node = view.get(name)
            assert node is not None
            view.fire(name, name != path, node.perms)  # below the root: exact watches only
            view.delete(name)
        parent = view.get(parent_of(path))
        assert parent is not None
        parent.children.remove(path[path.rfind("/") + 1 :])
        view.put(parent_of(path), parent)
        return OK

    @staticmethod
    def _subtree_bottom_up(view: View, path: str) -> list[str]:
        order, stack = [], [path]
        while stack:
            name = stack.pop()
            order.append(name)
            node = view.get(name)
            if node is not None:
                stack.extend(f"{name}/{child}" for child in node.children)
        return order[::-1]

    def _set_perms(self, s: Session, view: View, args: bytes) -> bytes:
        strings = _strings(args)
        if len(strings) < 2:
            raise XsError("EINVAL")
        perms = tuple(Perm.parse(text) for text in strings[1:])
        path = canonical(strings[0], s.domid, True)
        node = self._get(s, view, path, WRITE | OWNER)  # only owners and dom0 hold OWNER
        if not s.privileged and perms[0].domid != node.perms[0].domid:
            raise XsError("EPERM")
        old_perms, node.perms = node.perms, perms
        view.put(path, node)
        view.fire(path, False, old_perms)
        return OK

    def _watch(self, s: Session, view: View, args: bytes) -> bytes:
        strings = _strings(args)
        if len(strings) != 2:
            raise XsError("EINVAL")
        raw, token = strings
        path = canonical(raw, s.domid, True)
        if any(w.path == path and w.token == token for w in s.watches):
            raise XsError("EEXIST")
        prefix = 0 if raw[0] in "/@" else len(f"/local/domain/{s.domid}/")
        s.watches.append(Watch(path, token, prefix))
        return OK

    def _unwatch(self, s: Session, view: View, args: bytes) -> bytes:
        strings = _strings(args)
        if len(strings) != 2:
            raise XsError("EINVAL")
        path = canonical(strings[0], s.domid, True)
        for watch in s.watches:
            if watch.path == path and watch.token == strings[1]:
                s.watches.remove(watch)
                return OK
        raise XsError("ENOENT")

    def _tx_start(self, s: Session, view: View, args: bytes) -> bytes:
        if isinstance(view, Transaction):
            raise XsError("EBUSY")
        tx_id, s.next_tx = s.next_tx, (s.next_tx % 0xFFFFFFFF) + 1
        s.transactions[tx_id] = Transaction(self)
        return f"{tx_id}\0".encode()

    def _tx_end(self, s: Session, view: View, args: bytes) -> bytes:
        verdict = _one_arg(args)
        if verdict not in ("T", "F"):
            raise XsError("EINVAL")
        if not isinstance(view, Transaction):
            raise XsError("ENOENT")
        s.transactions = {k: v for k, v in s.transactions.items() if v is not view}
        if verdict == "T":
            view.commit()
        return OK

    def _domain_path(self, s: Session, view: View, args: bytes) -> bytes:
        return f"/local/domain/{parse_domid(_one_arg(args))}\0".encode()

    def _introduce(self, s: Session, view: View, args: bytes) -> bytes:
        strings = _strings(args)  # <domid>|<mfn>|<evtchn>|: there is no ring to map here
        if len(strings) < 3 or not 0 < parse_domid(strings[0]) <= DOMID_MAX:
            raise XsError("EINVAL")
        self.introduce(int(strings[0]))
        return OK

    def _release(self, s: Session, view: View, args: bytes) -> bytes:
        domid = parse_domid(_one_arg(args))
        if domid == 0:
            raise XsError("EINVAL")
        if domid not in self.introduced:
            raise XsError("ENOENT")
        self.release(domid)
        return OK

    def _is_introduced(self, s: Session, view: View, args: bytes) -> bytes:
        domid = parse_domid(_one_arg(args))
        return b"T\0" if domid == 0 or domid in self.introduced else b"F\0"

    def _reset_watches(self, s: Session, view: View, args: bytes) -> bytes:
        s.watches.clear()
        s.transactions.clear()
        return OK
