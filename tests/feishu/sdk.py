"""Running the real lark-oapi 1.7.5 against :class:`~tests.feishu.fake_feishu.FakeFeishu` in tests.

Three lark-oapi habits shape this module:

* **Blocking HTTP.** The sync API methods use ``requests``; the async ``a*`` methods use
  ``httpx`` but still fetch the tenant token with blocking ``requests`` (``verify()`` ->
  ``TokenManager``) whenever it is not cached. With the fake serving on the test's own
  event loop, a blocking call made *on* that loop can never be answered: it hangs until
  the client's timeout (none by default: forever). So: run sync methods with
  ``await asyncio.to_thread(...)``; before the first ``a*`` call, :func:`prime_tenant_token`
  (it fetches the token in a thread; lark-oapi then caches it for ``expire - 600`` s);
  build clients with a timeout (:func:`lark_client` uses 5 s) so a mistake fails fast.
* **A process-wide token cache** keyed by app id only (``TokenManager.cache``). The fake
  makes a fresh app id per instance; :func:`forget_tenant_token` drops one entry.
* **A module-level event loop.** ``lark_oapi.ws.client`` does ``loop =
  asyncio.get_event_loop()`` at import time and ``Client.start()`` calls
  ``loop.run_until_complete`` on it, blocking forever; ``Client()`` itself schedules a
  cache-cleaning task on the *current* loop. :class:`LarkWsThread` therefore builds and
  starts the client inside its own thread, after creating a fresh loop for that thread
  and pointing the module global at it, and stops it by stopping that loop from outside
  (the SDK has no stop method), cancelling the SDK's tasks, closing the loop and
  restoring the module global. The test's loop never runs an SDK task. Only one
  :class:`LarkWsThread` may run at a time (the global is shared).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Callable
from typing import Any

import lark_oapi as lark
import lark_oapi.ws.client as ws_client_module
from lark_oapi.core.token import TokenManager

__all__ = ["LarkWsThread", "forget_tenant_token", "lark_client", "prime_tenant_token"]


def lark_client(fake: Any, *, app_secret: str | None = None, timeout: float = 5.0) -> lark.Client:
    """A lark-oapi REST client pointed at ``fake`` (never at open.feishu.cn)."""
    return (
        lark.Client.builder()
        .app_id(fake.app_id)
        .app_secret(app_secret if app_secret is not None else fake.app_secret)
        .domain(fake.url)
        .timeout(timeout)
        .log_level(lark.LogLevel.WARNING)
        .build()
    )


async def prime_tenant_token(client: lark.Client) -> str:
    """Fetch (and let lark-oapi cache) the tenant token off the event loop; returns it."""
    return await asyncio.to_thread(TokenManager.get_self_tenant_token, client.config)


def forget_tenant_token(app_id: str) -> None:
    """Drop lark-oapi's cached tenant token of ``app_id`` (the next call fetches a new one)."""
    TokenManager.cache.cache.pop(f"self_tenant_token:{app_id}", None)  # type: ignore[attr-defined]


_one_at_a_time = threading.Lock()


class LarkWsThread:
    """One ``lark.ws.Client`` running in its own thread and event loop (see the module docstring).

    ``with LarkWsThread(fake.app_id, fake.app_secret, handler, fake.url):`` or
    :meth:`start` / :meth:`stop`. :attr:`error` holds what ``Client.start()`` raised
    (e.g. a ``ClientException`` for bad credentials), :attr:`client` the SDK client.
    """

    def __init__(
        self,
        app_id: str,
        app_secret: str,
        event_handler: lark.EventDispatcherHandler,
        domain: str,
        *,
        auto_reconnect: bool = True,
        log_level: lark.LogLevel = lark.LogLevel.WARNING,
    ) -> None:
        self._make: Callable[[], Any] = lambda: lark.ws.Client(
            app_id,
            app_secret,
            event_handler=event_handler,
            domain=domain,
            auto_reconnect=auto_reconnect,
            log_level=log_level,
        )
        self.client: Any = None
        self.error: BaseException | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._built = threading.Event()
        self._stopping = False

    def start(self) -> LarkWsThread:
        if not _one_at_a_time.acquire(blocking=False):
            raise RuntimeError("lark.ws.Client keeps its loop in a module global: run one LarkWsThread at a time")
        self._thread = threading.Thread(target=self._run, name="lark-ws-client", daemon=True)
        self._thread.start()
        self._built.wait(10)
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the SDK's loop, close its connection and tasks, join the thread.

        ``Client.start()`` runs several ``run_until_complete`` calls in a row; a stop that
        lands as one of them completes is swallowed and the next one would run forever,
        so the stop is repeated until the thread is gone. Blocking: from a coroutine use
        :meth:`astop` (the fake must keep serving for the SDK's close handshake).
        """
        if self._thread is None:
            return
        self._stopping = True
        deadline = time.monotonic() + timeout
        while self._thread.is_alive() and time.monotonic() < deadline:
            loop = self.loop
            if loop is not None and not loop.is_closed():
                with contextlib.suppress(RuntimeError):  # closed in between
                    loop.call_soon_threadsafe(loop.stop)
            self._thread.join(0.05)
        if self._thread.is_alive():
            raise RuntimeError("the lark ws thread did not stop")
        self._thread = None

    async def astop(self, timeout: float = 10.0) -> None:
        """:meth:`stop` without blocking the calling event loop."""
        await asyncio.to_thread(self.stop, timeout)

    def __enter__(self) -> LarkWsThread:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _run(self) -> None:
        previous = ws_client_module.loop
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        ws_client_module.loop = loop  # what Client.start() and its tasks use
        self.loop = loop
        try:
            self.client = self._make()  # its ExpiringCache schedules a task on this thread's loop
            self._built.set()
            self.client.start()  # returns only by raising (RuntimeError when we stop the loop)
        except BaseException as exc:  # reported through self.error
            if not (self._stopping and isinstance(exc, RuntimeError)):
                self.error = exc
        finally:
            self._built.set()
            self._shutdown(loop)
            ws_client_module.loop = previous
            asyncio.set_event_loop(None)
            _one_at_a_time.release()

    def _shutdown(self, loop: asyncio.AbstractEventLoop) -> None:
        # Cancel the SDK's tasks first: once the socket closes, its receive loop would
        # otherwise start reconnecting (a new endpoint call and handshake) mid-shutdown.
        tasks = [t for t in asyncio.all_tasks(loop) if not t.done()]
        for task in tasks:
            task.cancel()
        if tasks:
            loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
        conn = getattr(self.client, "_conn", None)
        if conn is not None:
            with contextlib.suppress(Exception):
                loop.run_until_complete(asyncio.wait_for(conn.close(), 1))
        with contextlib.suppress(Exception):
            loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()
