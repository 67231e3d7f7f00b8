"""Request size and concurrency limits."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .errors import ApiError, error_body

RETRY_AFTER_SECONDS = 5


class PayloadTooLarge(ApiError):
    def __init__(self, limit: int, setting: str = "max_body_bytes") -> None:
        super().__init__(413, "payload_too_large", f"the request body is larger than {limit} bytes ({setting})")


@dataclass(frozen=True)
class BodyLimit:
    max_bytes: int
    setting: str  # named in the 413, so the operator knows which knob it is


class BodySizeLimit:
    """ASGI middleware: 413 for bodies over the limit (declared or streamed).

    ``limit_for(scope)`` may give a route its own limit (file uploads); otherwise
    ``max_bytes`` applies.
    """

    def __init__(
        self,
        app: ASGIApp,
        max_bytes: int,
        compat_errors: Callable[[Scope], bool] = lambda _: False,
        limit_for: Callable[[Scope], BodyLimit | None] = lambda _: None,
    ) -> None:
        self.app = app
        self.default = BodyLimit(max_bytes, "max_body_bytes")
        self.compat_errors = compat_errors  # answer in the compat routes' {"detail": ..., "code": ...} shape
        self.limit_for = limit_for

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope) or self.default
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = 0
                if declared > limit.max_bytes:
                    await _reject(send, limit, compat=self.compat_errors(scope))
                    return
        received = 0

        async def limited() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit.max_bytes:
                    # An HTTPException: FastAPI re-raises it from body parsing as it is.
                    raise PayloadTooLarge(limit.max_bytes, limit.setting)
            return message

        await self.app(scope, limited, send)


async def _reject(send: Send, limit: BodyLimit, *, compat: bool) -> None:
    err = PayloadTooLarge(limit.max_bytes, limit.setting)
    body = json.dumps(error_body(err.code, err.message, compat=compat)).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


class TurnSlots:
    """At most ``limit`` turns at once; a full house is a 429, never a queue."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.in_use = 0

    def acquire(self) -> Slot:
        if self.in_use >= self.limit:
            raise ApiError(
                429,
                "too_many_turns",
                f"{self.in_use} turns are already running (max_concurrent_turns is {self.limit}); retry later",
                headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
            )
        self.in_use += 1
        return Slot(self)


class Slot:
    def __init__(self, slots: TurnSlots) -> None:
        self._slots: TurnSlots | None = slots

    def release(self) -> None:
        if self._slots is not None:
            self._slots.in_use -= 1
            self._slots = None
