"""The one base every fake platform server builds on (Anthropic, Telegram, Slack, Discord, Feishu).

A fake platform is an aiohttp application on 127.0.0.1 (a free port) that speaks
the platform's real wire protocol to its real SDK. What every fake needs is here:

* **lifecycle**: ``async with Fake() as fake`` starts it on a free port; ``stop()``
  closes it and wakes anybody waiting on it;
* **a call log**: :meth:`record` appends a :class:`Call` (of the subclass's
  :attr:`~PlatformServer.call_type`; :meth:`log` appends one the subclass built itself);
  :meth:`called` filters it; :meth:`wait_for_call` and :meth:`wait_until` wait for a
  call or any other change without polling (:meth:`watch` is the same wait without the
  timeout error, for long polls); a timeout names the last calls received;
* **failure injection**: :meth:`fail` queues :class:`Failure` s for a method (optionally
  only for calls whose parameters match ``when``); :meth:`take_failure` pops the next
  one that applies. Each fake decides how a failure looks on its wire (an HTTP status
  and the platform's JSON error body);
* **method dispatch**: :meth:`dispatch` finds the handler of a method named by the
  platform (``sendMessage``, ``chat.postMessage``, ``POST /channels/{id}/messages``)
  among the subclass's ``m_<name>`` methods (dots and slashes become ``_``), awaiting
  it when it is a coroutine; an unknown method raises :class:`UnknownMethod`.

Subclasses add their routes in :meth:`setup_routes` and keep platform state
(messages, threads, files) themselves.
"""

from __future__ import annotations

import asyncio
import inspect
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from aiohttp import web

__all__ = ["Call", "Failure", "PlatformServer", "UnknownMethod"]


@dataclass
class Call:
    """One request the fake received: the platform's method name and its parameters."""

    method: str
    params: dict[str, Any]
    at: float = field(default_factory=time.monotonic)


@dataclass
class Failure:
    """An injected error: ``status`` (HTTP), a platform error ``code``/``description``, a retry delay."""

    status: int
    code: Any = None
    description: str = "injected failure"
    retry_after: float | None = None
    when: Callable[[dict[str, Any]], bool] | None = None  # only calls whose params match
    extra: dict[str, Any] = field(default_factory=dict)  # platform-specific details (headers, body fields)


class UnknownMethod(Exception):
    """The fake has no handler for a method (each fake answers it the way its platform does)."""

    def __init__(self, method: str) -> None:
        super().__init__(method)
        self.method = method


CallT = TypeVar("CallT", bound=Call)

_SEPARATORS = re.compile(r"[./\-]")


def handler_name(method: str) -> str:
    """``chat.postMessage`` -> ``m_chat_postMessage``; ``im/v1/messages`` -> ``m_im_v1_messages``."""
    return "m_" + _SEPARATORS.sub("_", method.strip("/"))


class PlatformServer:
    """Base of the fake platform servers (see the module docstring)."""

    host: str = "127.0.0.1"
    client_max_size: int = 64 * 1024 * 1024
    call_type: type[Call] = Call  # what :meth:`record` logs (a subclass may add fields or aliases)

    def __init__(self, *, port: int = 0) -> None:
        self.port = port
        self.calls: list[Call] = []
        self._failures: dict[str, list[Failure]] = {}
        self._runner: web.AppRunner | None = None
        self._changed = asyncio.Condition()
        self.closing = False

    # -- lifecycle -------------------------------------------------------------
    def setup_routes(self, app: web.Application) -> None:
        """Add the platform's routes (subclasses)."""
        raise NotImplementedError

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>``: each fake derives its SDK's base URL from it."""
        return f"http://{self.host}:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://{self.host}:{self.port}"

    async def start(self) -> PlatformServer:
        app = web.Application(client_max_size=self.client_max_size)
        self.setup_routes(app)
        self._runner = web.AppRunner(app, handle_signals=False, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        server = site._server
        sockets = getattr(server, "sockets", None) or []
        assert sockets, "the fake platform server did not bind"
        self.port = sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        self.closing = True
        await self.changed()
        await self.on_stop()
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()

    async def on_stop(self) -> None:
        """Close what the subclass holds open (WebSockets, held requests) before the server goes."""

    async def __aenter__(self) -> Any:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- call log --------------------------------------------------------------
    def record(self, method: str, params: dict[str, Any] | None = None) -> Call:
        """Log a call of ``method`` (a :attr:`call_type`) and wake the waiters."""
        return self.log(self.call_type(method, dict(params or {})))

    def log(self, call: CallT) -> CallT:
        """Log a call the subclass built itself (extra fields) and wake the waiters; returns it."""
        self.calls.append(call)
        self._poke()
        return call

    def called(self, method: str) -> list[Call]:
        return [c for c in self.calls if c.method == method]

    async def changed(self) -> None:
        """Wake everybody waiting for a change (a call, a new message, the server closing)."""
        async with self._changed:
            self._changed.notify_all()

    def _poke(self) -> None:
        try:
            asyncio.get_running_loop().create_task(self.changed())
        except RuntimeError:  # no loop (called from a thread): waiters poll on their timeout
            pass

    async def watch(self, check: Callable[[], Any], timeout: float) -> Any:
        """Wait until ``check()`` is truthy, ``timeout`` has passed or the server is closing; returns
        the last value of ``check()`` (falsy when it gave up). For long polls; tests use :meth:`wait_until`."""
        deadline = time.monotonic() + timeout
        async with self._changed:
            while True:
                value = check()
                remaining = deadline - time.monotonic()
                if value or remaining <= 0 or self.closing:
                    return value
                try:
                    await asyncio.wait_for(self._changed.wait(), min(remaining, 0.5))
                except TimeoutError:
                    pass

    async def wait_until(self, check: Callable[[], Any], timeout: float = 30.0, what: str = "a change") -> Any:
        """Wait until ``check()`` is truthy (re-checked on every change); returns its value."""
        value = await self.watch(check, timeout)
        if not value:
            recent = [c.method for c in self.calls[-30:]]
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}; last calls: {recent}")
        return value

    async def wait_for_call(
        self, method: str, *, count: int = 1, when: Callable[[Call], bool] | None = None, timeout: float = 30.0
    ) -> list[Call]:
        """Wait until ``method`` was called ``count`` times (matching ``when``); returns those calls."""

        def matching() -> list[Call] | None:
            found = [c for c in self.called(method) if when is None or when(c)]
            return found if len(found) >= count else None

        return await self.wait_until(matching, timeout, f"{count} call(s) of {method}")

    # -- failure injection -----------------------------------------------------
    def fail(self, method: str, failure: Failure, *, times: int = 1) -> None:
        """Answer the next ``times`` calls of ``method`` (those ``failure.when`` accepts) with ``failure``."""
        self._failures.setdefault(method, []).extend([failure] * times)

    def take_failure(self, method: str, params: dict[str, Any]) -> Failure | None:
        """The next injected failure for this call, removed from the queue; None when there is none."""
        queue = self._failures.get(method) or []
        for i, failure in enumerate(queue):
            if failure.when is None or failure.when(params):
                del queue[i]
                return failure
        return None

    def pending_failures(self, method: str) -> int:
        return len(self._failures.get(method, []))

    def clear_failures(self) -> None:
        self._failures.clear()

    # -- method dispatch -------------------------------------------------------
    def has_method(self, method: str) -> bool:
        return callable(getattr(self, handler_name(method), None))

    async def dispatch(self, method: str, *args: Any, **kwargs: Any) -> Any:
        """Run the handler of ``method`` (``m_<name>``); raises :class:`UnknownMethod` when there is none."""
        handler = getattr(self, handler_name(method), None)
        if not callable(handler):
            raise UnknownMethod(method)
        result = handler(*args, **kwargs)
        if inspect.isawaitable(result):
            result = await result
        return result
