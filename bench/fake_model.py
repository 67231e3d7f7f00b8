"""The instant fake model, served from its own process.

``python -m bench.fake_model`` starts :class:`~tests.fakes.anthropic_api.FakeAnthropicAPI`
on 127.0.0.1, prints its port on the first line of stdout and serves until its
stdin is closed. Running it outside the measured process keeps the model's own
work off the event loop whose latency is being measured.
"""

from __future__ import annotations

import asyncio
import sys

from tests.fakes.anthropic_api import FakeAnthropicAPI, FakeRequest, Response, Text

REPLY = "Hello from the fake model, answering at once."
REPLY_CHUNKS = 3


def instant_reply(request: FakeRequest) -> Response:
    """Every request gets the same short reply, streamed in a few chunks with no delay."""
    return [Text(REPLY, chunks=REPLY_CHUNKS)]


async def serve() -> None:
    async with FakeAnthropicAPI(responder=instant_reply) as fake:
        print(fake.port, flush=True)
        await asyncio.to_thread(sys.stdin.read)  # returns at EOF: the parent is done (or gone)


if __name__ == "__main__":
    asyncio.run(serve())
