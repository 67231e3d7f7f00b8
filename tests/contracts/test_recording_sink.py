"""The sink contract against the in-memory recording sink (the reference)."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from core import MessageGone, RateLimited, SinkLimits
from tests.fakes.recording_sink import RecordingSink

from .sink_contract import SinkContract


@dataclass
class RecordingHarness:
    sink: RecordingSink = field(
        default_factory=lambda: RecordingSink(limits=SinkLimits(max_len=300, min_edit_interval=0.01))
    )

    async def new_sink(self) -> RecordingSink:
        return self.sink

    async def messages(self) -> list[str]:
        return self.sink.visible()

    async def rate_limit_next(self, op: str, retry_after: float) -> None:
        self.sink.fail(op, RateLimited(retry_after))

    async def approvals(self) -> list[str]:
        return self.sink.approvals

    async def files(self) -> list[str]:
        return self.sink.files

    async def api_calls(self) -> int:
        return len(self.sink.text_ops())

    async def gone_next(self, op: str) -> None:
        self.sink.fail(op, MessageGone("deleted"))


class TestRecordingSink(SinkContract):
    @pytest.fixture
    def harness(self) -> RecordingHarness:
        return RecordingHarness()
