"""Inside the test VM: Autobahn|Python sessions in one SELinux domain, driven line by line.

``guest_test`` starts one agent per domain with ``runcon CONTEXT python -m
tests.kernel.guest_agent SOCKET``. The agent's sockets are created in that domain, so the
router's SO_PEERSEC says so; the agent never names a label. It reads one JSON command per line
on stdin and answers each with one JSON line on stdout, saying what the router answered:

    {"op": "join", "name": "a1", "realm": "realm1"}  -> {"welcome": 123} | {"abort": "wamp...."}
    {"op": "register" | "subscribe", "name": ..., "uri": ...}     -> {"ok": true} | {"error": ...}
    {"op": "call", "name": ..., "uri": ..., "args": [...]}        -> {"result": ...} | {"error"}
    {"op": "publish", "name": ..., "uri": ..., "args": [...], "acknowledge": bool}
    {"op": "events" | "invocations", "name": ..., "count": n, "within": seconds} -> {"seen": [...]}

The first line it writes, once Autobahn is imported, is ``{"ready": true, "context": ...,
"uptime": ...}``: its own context as the kernel reports it, and when it got there. Registered
procedures echo their arguments.
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

import txaio

txaio.use_asyncio()

from autobahn.asyncio.rawsocket import WampRawSocketClientFactory  # noqa: E402
from autobahn.asyncio.wamp import ApplicationSession  # noqa: E402
from autobahn.wamp.exception import ApplicationError  # noqa: E402
from autobahn.wamp.serializer import JsonSerializer  # noqa: E402
from autobahn.wamp.types import CallResult, ComponentConfig, PublishOptions  # noqa: E402

STEP = 20.0  # seconds one command may take (the VM emulates its CPU)


class Session(ApplicationSession):
    """A session whose join can be awaited, recording what it receives."""

    def __init__(self, config: ComponentConfig) -> None:
        super().__init__(config)
        self.joined: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self.events: list[Any] = []
        self.invocations: list[Any] = []

    def onJoin(self, details: Any) -> None:
        self.joined.set_result({"welcome": details.session})

    def onLeave(self, details: Any) -> Any:
        if not self.joined.done():
            self.joined.set_result({"abort": details.reason})
        return super().onLeave(details)

    def onDisconnect(self) -> None:
        if not self.joined.done():
            self.joined.set_result({"abort": "disconnected"})
        super().onDisconnect()

    def echo(self, *args: Any) -> list[Any]:
        self.invocations.append(list(args))
        return list(args)

    def record(self, *args: Any) -> None:
        self.events.append(list(args))


class Agent:
    """The sessions of one domain, by the names the driver gives them."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.sessions: dict[str, Session] = {}

    async def join(self, name: str, realm: str) -> dict[str, Any]:
        session = Session(ComponentConfig(realm))
        self.sessions[name] = session
        factory = WampRawSocketClientFactory(lambda: session, serializer=JsonSerializer())
        await asyncio.get_running_loop().create_unix_connection(factory, self.path)
        return await session.joined

    async def register(self, name: str, uri: str) -> dict[str, Any]:
        session = self.sessions[name]
        await session.register(session.echo, uri)
        return {"ok": True}

    async def subscribe(self, name: str, uri: str) -> dict[str, Any]:
        session = self.sessions[name]
        await session.subscribe(session.record, uri)
        return {"ok": True}

    async def call(self, name: str, uri: str, args: list[Any] | None = None) -> dict[str, Any]:
        result = await self.sessions[name].call(uri, *(args or []))
        if isinstance(result, CallResult):
            result = {"args": list(result.results), "kwargs": result.kwresults}
        return {"result": result}

    async def publish(
        self, name: str, uri: str, args: list[Any], acknowledge: bool
    ) -> dict[str, Any]:
        options = PublishOptions(acknowledge=acknowledge)
        published = self.sessions[name].publish(uri, *args, options=options)
        if published is not None:  # None: not acknowledged, nothing will come back
            await published
        return {"ok": True}

    async def events(self, name: str, count: int = 0, within: float = 0.0) -> dict[str, Any]:
        return {"seen": await self._wait(self.sessions[name].events, count, within)}

    async def invocations(self, name: str, count: int = 0, within: float = 0.0) -> dict[str, Any]:
        return {"seen": await self._wait(self.sessions[name].invocations, count, within)}

    @staticmethod
    async def _wait(seen: list[Any], count: int, within: float) -> list[Any]:
        """``seen`` once it holds ``count`` items, or after ``within`` seconds."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while len(seen) < count and loop.time() < deadline:
            await asyncio.sleep(0.05)
        if count == 0 and within:
            await asyncio.sleep(within)  # nothing is expected: give it the time to come anyway
        return list(seen)

    async def leave(self, name: str) -> dict[str, Any]:
        session = self.sessions.pop(name)
        if session.is_attached():
            session.leave()
        return {"ok": True}

    async def handle(self, command: dict[str, Any]) -> dict[str, Any]:
        op = command.pop("op")
        if op not in {"join", "register", "subscribe", "call", "publish", "events",
                      "invocations", "leave"}:
            return {"exception": f"unknown op {op!r}"}
        try:
            reply: dict[str, Any] = await asyncio.wait_for(getattr(self, op)(**command), STEP)
            return reply
        except ApplicationError as e:
            return {"error": e.error}
        except Exception as e:  # reported to the driver, which fails the test with it
            return {"exception": f"{type(e).__name__}: {e}"}


def own_context() -> str:
    with open("/proc/self/attr/current", "rb") as file:
        return file.read().rstrip(b"\0\n").decode()


def uptime() -> float:
    with open("/proc/uptime") as file:
        return float(file.read().split()[0])


def say(message: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


async def main(path: str) -> None:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    agent = Agent(path)
    say({"ready": True, "context": own_context(), "uptime": uptime()})
    while line := await reader.readline():
        say(await agent.handle(json.loads(line)))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
