"""Receiving over lark-oapi's long connection (``lark.ws.Client``) without touching the bot's event loop.

lark-oapi's ws client is built for a program that does nothing else:
``lark_oapi.ws.client`` grabs a module-level event loop at import time, and
``Client.start()`` blocks in ``loop.run_until_complete`` on it forever. So:

* the client is built and started in a thread of its own, on a fresh loop of that
  thread; the bot's loop never runs an SDK task and is never blocked by one;
* the module global ``loop`` is replaced (once, process-wide) by :class:`ThreadLoops`,
  which answers for the loop of the *calling* thread: each long connection runs on
  its own loop, so several Feishu/Lark bots can share one process;
* the SDK has no stop method: :meth:`LongConnection.stop` stops that loop from
  outside (repeatedly: ``start()`` runs several ``run_until_complete`` in a row),
  cancels the SDK's tasks, closes the socket and the loop.

The SDK answers (acks) an event frame only when its handler returns, and Feishu
pushes an event again when it is not acked within 3 s. The handler
(:class:`PayloadHandler`) therefore only hands the event body to the bot's loop and
returns: every event is acked at once (unknown event types too, instead of lark-oapi's
500 that would make Feishu push them again). Card action callbacks are the one thing
answered with a body (a toast): their answer is awaited (a short, bounded time) in a
worker thread, so a slow one never holds up the other events.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import lark_oapi as lark
import lark_oapi.ws.client as ws_client_module
from lark_oapi.ws.const import HEADER_SUM, HEADER_TYPE
from lark_oapi.ws.enum import MessageType

log = logging.getLogger(__name__)

Payload = Callable[[dict[str, Any]], Any]


class ThreadLoops:
    """Stands in for ``lark_oapi.ws.client.loop``: each thread sees the loop it bound (else the original)."""

    def __init__(self, fallback: asyncio.AbstractEventLoop | None) -> None:
        self._fallback = fallback
        self._local = threading.local()

    def bind(self, loop: asyncio.AbstractEventLoop | None) -> None:
        self._local.loop = loop

    def current(self) -> asyncio.AbstractEventLoop:
        loop = getattr(self._local, "loop", None) or self._fallback
        if loop is None:
            raise RuntimeError("no event loop bound for lark-oapi's ws client in this thread")
        return loop

    def __getattr__(self, name: str) -> Any:
        return getattr(self.current(), name)


_install_lock = threading.Lock()


def thread_loops() -> ThreadLoops:
    """The :class:`ThreadLoops` behind ``lark_oapi.ws.client.loop`` (installed on first use)."""
    with _install_lock:
        current = ws_client_module.loop
        if isinstance(current, ThreadLoops):
            return current
        loops = ThreadLoops(current)
        ws_client_module.loop = loops  # type: ignore[assignment]
        return loops


class PayloadHandler(lark.EventDispatcherHandler):
    """The event handler lark.ws.Client calls (``_do_without_validation``) with each event's raw payload.

    The body goes to ``on_payload`` as a dict; what it returns (None, or a card
    callback's answer) becomes the ack's data. ``waits(body)``: the answer takes a while (a card
    callback): :class:`_Client` computes it in a worker thread first, and the SDK's call then
    picks it up (:meth:`answer_ahead`), so the SDK's loop is never held up.
    """

    def __init__(self, on_payload: Payload, waits: Callable[[dict[str, Any]], bool] = lambda body: False) -> None:
        super().__init__()
        self._on_payload = on_payload
        self._waits = waits
        self._ahead: dict[bytes, list[Any]] = {}
        self._lock = threading.Lock()

    @staticmethod
    def _body(payload: bytes) -> dict[str, Any] | None:
        try:
            body = json.loads(payload.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            log.warning("Feishu: skipping a long-connection payload that is not JSON")
            return None
        return body if isinstance(body, dict) else None

    def waits(self, payload: bytes) -> bool:
        """Whether the answer to ``payload`` takes a while (then :meth:`answer_ahead` it in a thread)."""
        body = self._body(payload)
        return body is not None and self._waits(body)

    def answer_ahead(self, payload: bytes) -> None:
        """Compute the answer to a payload that :meth:`waits` now (blocking: call it in a worker thread)
        and keep it for the SDK's own call."""
        body = self._body(payload)
        if body is None:
            return
        answer = self._on_payload(body)
        with self._lock:
            self._ahead.setdefault(payload, []).append(answer)

    def _do_without_validation(self, payload: bytes) -> Any:
        with self._lock:
            ahead = self._ahead.get(payload)
            if ahead:
                answer = ahead.pop(0)
                if not ahead:
                    del self._ahead[payload]
                return answer
        body = self._body(payload)
        return self._on_payload(body) if body is not None else None


class _Client(lark.ws.Client):  # type: ignore[misc]
    """lark-oapi's ws client, telling :class:`LongConnection` when it gives up.

    A reconnect the platform refuses for good (a rotated app secret, the connection limit) raises
    inside the SDK's receive task, where nobody sees it: the task ends, ``start()`` keeps waiting
    and no event ever arrives again. Here that error ends the connection's thread instead.
    """

    def __init__(self, *args: Any, on_fatal: Callable[[BaseException], None], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._on_fatal = on_fatal

    async def _handle_data_frame(self, frame: Any) -> None:
        """A card callback's answer is computed in a worker thread before the SDK's synchronous handler
        call (which would hold the SDK's loop — every other event, press and ping — while it waits)."""
        handler = self._event_handler
        if isinstance(handler, PayloadHandler):
            try:
                headers = {h.key: h.value for h in frame.headers}
                whole = headers.get(HEADER_SUM, "1") == "1" and headers.get(HEADER_TYPE) == MessageType.EVENT.value
            except Exception:  # noqa: BLE001 (a frame of another shape: the SDK handles it as it is)
                whole = False
            if whole and handler.waits(frame.payload):  # other events are answered at once, on this loop
                try:
                    await asyncio.to_thread(handler.answer_ahead, frame.payload)
                except Exception as exc:  # noqa: BLE001 (the SDK's own call below raises it again: a 500 ack)
                    log.debug("Feishu: answering a card callback ahead failed: %r", exc)
        await super()._handle_data_frame(frame)

    async def _receive_message_loop(self) -> None:
        try:
            await super()._receive_message_loop()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 (whatever it is, the connection is over)
            self._on_fatal(exc)


class LongConnection:
    """One ``lark.ws.Client`` in its own thread and event loop."""

    def __init__(
        self,
        app_id: str,
        app_secret: str,
        domain: str,
        on_payload: Payload,
        *,
        waits: Callable[[dict[str, Any]], bool] = lambda body: False,
        log_level: lark.LogLevel = lark.LogLevel.WARNING,
    ) -> None:
        self._make: Callable[[], Any] = lambda: _Client(
            app_id,
            app_secret,
            event_handler=PayloadHandler(on_payload, waits),
            domain=domain,
            auto_reconnect=True,
            log_level=log_level,
            on_fatal=self._given_up,
        )
        self.client: Any = None
        self.error: BaseException | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.on_end: Callable[[], None] | None = None  # called (in its thread) when the connection ends
        self._thread: threading.Thread | None = None
        self._built = threading.Event()
        self._stopping = False

    def _given_up(self, exc: BaseException) -> None:
        """The SDK stopped reconnecting (on its loop): record why and end the thread."""
        if self._stopping:
            return
        log.error("Feishu: the long connection was lost for good: %r", exc)
        self.error = exc
        if self.loop is not None:
            self.loop.stop()  # start() returns (RuntimeError): the thread ends

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    @property
    def connected(self) -> bool:
        """A WebSocket is open right now (lark-oapi keeps it in ``_conn``)."""
        return self.alive and getattr(self.client, "_conn", None) is not None

    def start(self) -> None:
        loops = thread_loops()
        self._thread = threading.Thread(target=self._run, args=(loops,), name="feishu-long-connection", daemon=True)
        self._thread.start()
        self._built.wait(10)

    async def wait_connected(self, timeout: float) -> bool:
        """Wait until the first connection is up; raises what the SDK raised; False on timeout."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.error is not None:
                raise self.error
            if self.connected:
                return True
            if not self.alive:
                break
            await asyncio.sleep(0.05)
        if self.error is not None:
            raise self.error
        return self.connected

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the SDK's loop, close its connection and tasks, join the thread (blocking: use a thread)."""
        thread = self._thread
        if thread is None:
            return
        self._stopping = True
        deadline = time.monotonic() + timeout
        while thread.is_alive() and time.monotonic() < deadline:
            loop = self.loop
            if loop is not None and not loop.is_closed():
                with contextlib.suppress(RuntimeError):  # closed in between
                    loop.call_soon_threadsafe(loop.stop)
            thread.join(0.05)
        if thread.is_alive():
            log.warning("Feishu: the long-connection thread did not stop within %gs", timeout)
        self._thread = None

    def _run(self, loops: ThreadLoops) -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        loops.bind(loop)
        self.loop = loop
        try:
            self.client = self._make()  # its ExpiringCache schedules a task on the current (this) loop
            self._built.set()
            self.client.start()  # returns only by raising (RuntimeError once the loop is stopped)
        except BaseException as exc:  # reported through self.error
            if self.error is None and not (self._stopping and isinstance(exc, RuntimeError)):
                log.error("Feishu: the long connection failed: %r", exc)
                self.error = exc
        finally:
            self._built.set()
            self._shutdown(loop)
            loops.bind(None)
            asyncio.set_event_loop(None)
            if self.on_end is not None:
                self.on_end()

    def _shutdown(self, loop: asyncio.AbstractEventLoop) -> None:
        # Cancel the SDK's tasks first: once the socket closes, its receive loop would
        # otherwise start reconnecting (a new endpoint call and handshake) mid-shutdown.
        tasks = [t for t in asyncio.all_tasks(loop) if not t.done()]
        for task in tasks:
            task.cancel()
        with contextlib.suppress(Exception):
            if tasks:
                loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
        conn = getattr(self.client, "_conn", None)
        if conn is not None:
            with contextlib.suppress(Exception):
                loop.run_until_complete(asyncio.wait_for(conn.close(), 2))
        with contextlib.suppress(Exception):
            loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()
