"""The long connection (``lark.ws.Client``): endpoint discovery, protobuf frames, pushes and acks.

``POST /callback/ws/endpoint`` (body ``{"AppID", "AppSecret"}``, no token) answers
``{"code": 0, "data": {"URL": "ws://…/ws/v2?device_id=…&service_id=…&ticket=…",
"ClientConfig": {...}}}``; the ticket is good for one handshake (the SDK asks again on
every reconnect). Frames are described in :mod:`tests.feishu.frames`.

Delivery follows Feishu's cluster mode: each push goes to ONE random open connection;
an event not acked with code 200 within :attr:`LongConnection.repush_after` seconds (3 on
Feishu) is pushed again, with a fresh frame ``message_id`` but the same event body (same
``header.event_id``), at most :attr:`LongConnection.max_repushes` times. A late ack of an
earlier push still settles the event. A 500 ack (the SDK's answer when its handler
raised, or has no handler for the event type) does not.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web

from tests.fakes.platform_server import PlatformServer

from . import frames
from .errors import APP_SECRET_INVALID, FeishuError
from .model import Attempt, Delivery
from .wire import ApiRequest, json_response

# What Feishu's endpoint answers (seconds); the fake defaults to quick reconnects instead.
FEISHU_CLIENT_CONFIG = {"ReconnectCount": -1, "ReconnectInterval": 120, "ReconnectNonce": 30, "PingInterval": 120}
QUICK_CLIENT_CONFIG = {"ReconnectCount": -1, "ReconnectInterval": 1, "ReconnectNonce": 0, "PingInterval": 120}
WS_PATH = "/ws/v2"


@dataclass
class WsConnection:
    """One long connection a client opened."""

    conn_id: str  # the URL's device_id
    service_id: int
    ws: web.WebSocketResponse
    request: web.Request
    opened_at: float = field(default_factory=time.monotonic)
    closed_at: float | None = None
    pings: int = 0

    @property
    def open(self) -> bool:
        return self.closed_at is None and not self.ws.closed


class LongConnection(PlatformServer):
    """The long-connection half of :class:`~tests.feishu.fake_feishu.FakeFeishu` (state set up there)."""

    app_id: str
    app_secret: str
    client_config: dict[str, Any]
    repush_after: float
    max_repushes: int
    connect_timeout: float
    deliveries: list[Delivery]
    connections: list[WsConnection]
    _tickets: dict[str, tuple[str, int]]
    _attempts: dict[str, tuple[Delivery, Attempt]]
    _tasks: set[asyncio.Task[None]]
    _rng: random.Random

    def m_callback_ws_endpoint(self, req: ApiRequest) -> web.Response:
        if req.body.get("AppID") != self.app_id or req.body.get("AppSecret") != self.app_secret:
            raise FeishuError(APP_SECRET_INVALID, status=200)
        device_id = str(7_000_000_000_000_000_000 + secrets.randbelow(10**18))
        service_id = 100_000 + secrets.randbelow(900_000)
        ticket = secrets.token_hex(16)
        self._tickets[ticket] = (device_id, service_id)
        query = (
            f"fpid=493&aid=552564&device_id={device_id}&access_key={secrets.token_hex(16)}"
            f"&service_id={service_id}&ticket={ticket}"
        )
        data = {"URL": f"{self.ws_url}{WS_PATH}?{query}", "ClientConfig": dict(self.client_config)}
        return json_response({"code": 0, "msg": "ok", "data": data})

    @property
    def acked_event_ids(self) -> list[str]:
        return [d.event_id for d in self.deliveries if d.acked]

    def open_connections(self) -> list[WsConnection]:
        return [c for c in self.connections if c.open]

    async def close_connections(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for conn in self.connections:
            if conn.open:
                await conn.ws.close(code=aiohttp.WSCloseCode.GOING_AWAY, message=b"server shutting down")

    async def push(self, body: dict[str, Any], *, frame_type: str = "event", parts: int = 1) -> Delivery:
        """Push an event to one open connection; returns once the first push is written.

        Re-pushed every :attr:`repush_after` seconds until acked with code 200 (a 500 ack,
        the SDK's answer when the handler raised, does not count). ``parts`` > 1 splits
        the payload over that many frames (``sum``/``seq`` headers).
        """
        header = body.get("header") or {}
        delivery = Delivery(str(header.get("event_id") or body.get("uuid") or secrets.token_hex(16)), body, frame_type)
        self.deliveries.append(delivery)
        task = asyncio.get_running_loop().create_task(self._deliver(delivery, parts))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        await self.wait_until(lambda: delivery.attempts or task.done(), self.connect_timeout + 1, "the first push")
        if task.done() and not task.cancelled() and task.exception() is not None:
            raise task.exception()  # type: ignore[misc]
        return delivery

    async def wait_for_ack(self, delivery: Delivery, timeout: float = 10.0) -> Delivery:
        await self.wait_until(lambda: delivery.acked, timeout, f"an ack of event {delivery.event_id}")
        return delivery

    async def wait_for_pushes(self, delivery: Delivery, count: int, timeout: float = 10.0) -> Delivery:
        await self.wait_until(lambda: delivery.pushes >= count, timeout, f"{count} pushes of {delivery.event_id}")
        return delivery

    async def wait_for_connection(self, *, total: int = 1, timeout: float = 10.0) -> WsConnection:
        """Wait until ``total`` connections were opened and one is open; returns the newest open one."""

        def ready() -> WsConnection | None:
            open_now = self.open_connections()
            return open_now[-1] if len(self.connections) >= total and open_now else None

        return await self.wait_until(ready, timeout, f"long connection #{total}")

    async def drop_connection(self, conn: WsConnection | None = None, *, abrupt: bool = False) -> WsConnection:
        """Close a connection (the newest open one): a close frame, or ``abrupt`` a TCP abort."""
        conn = conn or self.open_connections()[-1]
        if abrupt and conn.request.transport is not None:
            conn.request.transport.abort()  # type: ignore[attr-defined]
        else:
            await conn.ws.close(code=aiohttp.WSCloseCode.GOING_AWAY, message=b"dropped by the fake")
        await self.wait_until(lambda: conn.closed_at is not None, 5.0, "the connection to close")
        return conn

    def _pick_connection(self) -> WsConnection | None:
        candidates = self.open_connections()
        return self._rng.choice(candidates) if candidates else None

    async def _deliver(self, delivery: Delivery, parts: int) -> None:
        payload = json.dumps(delivery.body, ensure_ascii=False).encode()
        parts = max(1, min(parts, len(payload)))
        for _ in range(1 + self.max_repushes):
            try:
                conn = await self.wait_until(self._pick_connection, self.connect_timeout, "a long connection")
            except AssertionError:
                if self.closing:
                    return
                raise
            attempt = Attempt(secrets.token_hex(16), conn.conn_id)
            self._attempts[attempt.message_id] = (delivery, attempt)
            delivery.attempts.append(attempt)
            trace_id = secrets.token_hex(16)
            for part in frames.event_parts(
                conn.service_id, attempt.message_id, trace_id, payload, frame_type=delivery.frame_type, parts=parts
            ):
                with contextlib.suppress(ConnectionError, RuntimeError):
                    await conn.ws.send_bytes(part)
            self.record("ws.push", {"event_id": delivery.event_id, "message_id": attempt.message_id})
            try:
                await self.wait_until(lambda: delivery.acked, self.repush_after, "an ack")
                return
            except AssertionError:
                if self.closing:
                    return
        delivery.gave_up = True
        self._poke()

    # -- long connection: the WebSocket ------------------------------------------------
    async def _ws(self, http: web.Request) -> web.StreamResponse:
        ticket = self._tickets.pop(http.query.get("ticket", ""), None)
        if ticket is None or http.query.get("device_id") != ticket[0]:
            headers = {"handshake-status": "403", "handshake-msg": "invalid ticket"}
            return web.Response(status=403, text="forbidden", headers=headers)
        ws = web.WebSocketResponse(autoping=True, max_msg_size=0)
        try:
            await ws.prepare(http)
        except ConnectionError:  # the client went away during the handshake
            return web.Response(status=400)
        conn = WsConnection(ticket[0], ticket[1], ws, http)
        self.connections.append(conn)
        self.record("ws.connect", {"conn_id": conn.conn_id, "service_id": conn.service_id})
        try:
            async for msg in ws:
                if msg.type == aiohttp.WSMsgType.BINARY:
                    await self._on_frame(conn, msg.data)
        finally:
            conn.closed_at = time.monotonic()
            self.record("ws.close", {"conn_id": conn.conn_id})
        return ws

    async def _on_frame(self, conn: WsConnection, data: bytes) -> None:
        frame = frames.parse(data)
        headers = frames.headers_of(frame)
        if frame.method == frames.CONTROL and headers.get("type") == "ping":
            conn.pings += 1
            self.record("ws.ping", {"conn_id": conn.conn_id, "service": frame.service})
            with contextlib.suppress(ConnectionError):  # closing under our feet
                await conn.ws.send_bytes(frames.pong(conn.service_id, self.client_config))
        elif frame.method == frames.DATA:
            code, answer = frames.ack_of(frame)
            found = self._attempts.get(headers.get("message_id", ""))
            if found is not None:
                delivery, attempt = found
                attempt.acked_at, attempt.ack_code = time.monotonic(), code
                if code == 200 and answer is not None:
                    delivery.response = answer
            self.record(
                "ws.ack",
                {
                    "message_id": headers.get("message_id"),
                    "event_id": found[0].event_id if found else None,
                    "code": code,
                    "biz_rt": headers.get("biz_rt"),
                },
            )
