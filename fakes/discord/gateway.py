"""A minimal Discord Gateway (v10, JSON, uncompressed) over an aiohttp websocket.

HELLO -> IDENTIFY -> READY + GUILD_CREATE; heartbeats and ACKs; RESUME with replay of missed
events; REQUEST_GUILD_MEMBERS -> GUILD_MEMBERS_CHUNK; dispatches from `FakeDiscordState`.

Compression: discord.py always asks for transport compression (`?compress=zlib-stream`) and
sets `compress: true` in IDENTIFY. We ignore both and send text frames, which discord.py
parses directly (it only decompresses binary frames); Discord's docs make the compressed
transport optional, so an uncompressed answer is within the protocol.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import Any

from aiohttp import WSMsgType, web

from .calls import GATEWAY_SOCKETS, STATE
from .models import GatewaySession, connection_ids
from .state import FakeDiscordState, GatewayClose

log = logging.getLogger(__name__)

OP_DISPATCH = 0
OP_HEARTBEAT = 1
OP_IDENTIFY = 2
OP_PRESENCE_UPDATE = 3
OP_VOICE_STATE_UPDATE = 4
OP_RESUME = 6
OP_RECONNECT = 7
OP_REQUEST_GUILD_MEMBERS = 8
OP_INVALID_SESSION = 9
OP_HELLO = 10
OP_HEARTBEAT_ACK = 11

CLOSE_REASONS = {
    1001: "Server going away.",
    4000: "Unknown error.",
    4001: "Unknown opcode.",
    4002: "Decode error.",
    4003: "Not authenticated.",
    4004: "Authentication failed.",
    4005: "Already authenticated.",
    4009: "Session timed out.",
    4012: "Invalid API version.",
    4014: "Disallowed intent(s).",
}


class GatewayConnection:
    """One websocket. Everything sent goes through `queue`, written by a single task, so
    frames keep the order in which the state produced them (whatever thread that was)."""

    def __init__(self, state: FakeDiscordState, ws: web.WebSocketResponse, resume_url: str):
        self.state = state
        self.ws = ws
        self.resume_url = resume_url
        self.loop = asyncio.get_running_loop()
        self.queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.session: GatewaySession | None = None
        self.id = next(connection_ids)

    def sink(self, payload: dict[str, Any]) -> None:
        """Called by the state (any thread, under its lock): hand over to our loop."""
        # RuntimeError: the loop is closed because the server is shutting down.
        with contextlib.suppress(RuntimeError):
            self.loop.call_soon_threadsafe(self.queue.put_nowait, payload)

    async def run(self) -> None:
        with self.state.lock:
            self.state.connections_open += 1
            interval_ms = self.state.config.heartbeat_interval_ms
        writer = asyncio.create_task(self._writer())
        self.queue.put_nowait({"op": OP_HELLO, "d": {"heartbeat_interval": interval_ms}})
        try:
            await self._reader(interval_ms / 1000)
            # Let the writer flush what is queued, including a close code the reader chose;
            # the trailing 1000 only matters if nothing closed the socket yet.
            self.queue.put_nowait({"__close__": 1000})
            await asyncio.wait_for(asyncio.shield(writer), timeout=5)
        except TimeoutError:
            pass
        finally:
            writer.cancel()
            with self.state.lock:
                self.state.connections_open -= 1
                if self.session is not None:
                    self.state.gateway_detach(self.session, self.id)
                self.state._changed()

    async def _writer(self) -> None:
        while True:
            payload = await self.queue.get()
            if "__close__" in payload:
                await self.close(int(payload["__close__"]))
                return
            if self.ws.closed:
                return
            try:
                await self.ws.send_str(json.dumps(payload))
            except (ConnectionError, RuntimeError):
                return

    async def close(self, code: int) -> None:
        if not self.ws.closed:
            await self.ws.close(code=code, message=CLOSE_REASONS.get(code, "").encode())

    async def _reader(self, interval_s: float) -> None:
        # Discord drops a connection whose heartbeats stop; allow two intervals of slack.
        timeout = interval_s * 2 + 1
        while not self.ws.closed:
            try:
                msg = await self.ws.receive(timeout=timeout)
            except TimeoutError:
                self.queue.put_nowait({"__close__": 4009})
                return
            if msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED):
                return
            if msg.type == WSMsgType.ERROR:
                return
            if msg.type != WSMsgType.TEXT:
                self.queue.put_nowait({"__close__": 4002})
                return
            try:
                payload = json.loads(msg.data)
                op = payload["op"]
            except (ValueError, KeyError, TypeError):
                self.queue.put_nowait({"__close__": 4002})
                return
            close_code = await self._handle(op, payload.get("d"))
            if close_code is not None:
                self.queue.put_nowait({"__close__": close_code})
                return

    async def _handle(self, op: int, data: Any) -> int | None:
        """Act on one client payload; return a close code to end the connection."""
        if op == OP_HEARTBEAT:
            self.state.gateway_heartbeat(self.session)
            self.queue.put_nowait({"op": OP_HEARTBEAT_ACK})
            return None
        if op == OP_IDENTIFY:
            if self.session is not None:
                return 4005
            try:
                self.session = self.state.gateway_identify(
                    data or {}, sink=self.sink, connection_id=self.id, resume_url=self.resume_url
                )
            except GatewayClose as exc:
                return exc.code
            return None
        if op == OP_RESUME:
            if self.session is not None:
                return 4005
            session = self.state.gateway_resume(data or {}, sink=self.sink, connection_id=self.id)
            if session is None:
                self.queue.put_nowait({"op": OP_INVALID_SESSION, "d": False})
            self.session = session
            return None
        if self.session is None:
            return 4003
        if op == OP_REQUEST_GUILD_MEMBERS:
            await self._send_member_chunks(data or {})
            return None
        if op in (OP_PRESENCE_UPDATE, OP_VOICE_STATE_UPDATE):
            return None
        return 4001

    async def _send_member_chunks(self, data: dict[str, Any]) -> None:
        assert self.session is not None
        chunks = self.state.gateway_member_chunks(self.session, data)
        for chunk in chunks or []:
            with self.state.lock:
                # An answer to this socket's request, not world news: not kept for RESUME
                # (a 200k-member guild would otherwise pin 200 chunks in memory).
                self.session.deliver("GUILD_MEMBERS_CHUNK", chunk, replayable=False)
            # Let the writer drain between chunks: a 200k-member guild is 200 frames.
            await asyncio.sleep(0)


async def handle(request: web.Request) -> web.StreamResponse:
    """GET /gateway (websocket upgrade). `?v=` must be 9 or 10, `?encoding=` json."""
    state: FakeDiscordState = request.app[STATE]
    # No permessage-deflate either; a short close handshake keeps server shutdown quick
    # even when a client process is frozen.
    ws = web.WebSocketResponse(max_msg_size=16 * 1024 * 1024, compress=False, timeout=2.0)
    await ws.prepare(request)
    if request.query.get("v", "10") not in ("9", "10"):
        await ws.close(code=4012, message=CLOSE_REASONS[4012].encode())
        return ws
    if request.query.get("encoding", "json") != "json":
        await ws.close(code=4002, message=b"Only encoding=json is supported by the fake.")
        return ws
    resume_url = f"ws://{request.host}/gateway"
    connection = GatewayConnection(state, ws, resume_url)
    request.app[GATEWAY_SOCKETS].add(ws)
    try:
        await connection.run()
    finally:
        request.app[GATEWAY_SOCKETS].discard(ws)
    return ws
