"""Request size and concurrency limits."""

from __future__ import annotations

import json
from collections.abc import Callable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .errors import ApiError, error_body

RETRY_AFTER_SECONDS = 5


class PayloadTooLarge(ApiError):
    def __init__(self, limit: int) -> None:
        super().__init__(413, "payload_too_large", f"the request body is larger than {limit} bytes (max_body_bytes)")


class BodySizeLimit:
    """ASGI middleware: 413 for bodies over ``max_bytes`` (declared or streamed)."""

    def __init__(self, app: ASGIApp, max_bytes: int, detail_errors: Callable[[Scope], bool] = lambda _: False) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.detail_errors = detail_errors  # answer in the compat routes' {"detail": ...} shape

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = 0
                if declared > self.max_bytes:
                    await _reject(send, self.max_bytes, detail=self.detail_errors(scope))
                    return
        received = 0

        async def limited() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    # An HTTPException: FastAPI re-raises it from body parsing as it is.
                    raise PayloadTooLarge(self.max_bytes)
            return message

        await self.app(scope, limited, send)


async def _reject(send: Send, limit: int, *, detail: bool) -> None:
    err = PayloadTooLarge(limit)
    body = json.dumps(error_body(err.code, err.message, detail=detail)).encode()
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
