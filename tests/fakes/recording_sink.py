"""A recording fake sink: an in-memory 'platform' for reply-engine and contract tests."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core import ApprovalRequest, MessageGone, ReplySink, SinkError, SinkLimits


@dataclass
class Op:
    name: str  # post | edit | finalize | typing | approval | file
    handle: Any
    text: str
    at: float
    ok: bool = True


@dataclass
class RecordingSink(ReplySink):
    limits: SinkLimits = field(default_factory=lambda: SinkLimits(max_len=200, min_edit_interval=1.0))
    clock: Any = None  # callable returning "now" (virtual time in tests)
    ops: list[Op] = field(default_factory=list)
    messages: dict[int, str] = field(default_factory=dict)  # handle -> visible text
    final: dict[int, bool] = field(default_factory=dict)
    approvals: list[str] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    # failure injection: op name -> list of exceptions raised by the next calls
    failures: dict[str, list[Exception]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._ids = itertools.count(1)

    def _now(self) -> float:
        return self.clock() if self.clock else 0.0

    def fail(self, op: str, *errors: Exception) -> None:
        self.failures.setdefault(op, []).extend(errors)

    def _maybe_fail(self, op: str, handle: Any, text: str) -> None:
        queue = self.failures.get(op)
        if queue:
            err = queue.pop(0)
            self.ops.append(Op(op, handle, text, self._now(), ok=False))
            raise err

    async def post(self, text: str) -> Any:
        self._maybe_fail("post", None, text)
        handle = next(self._ids)
        self.messages[handle] = text
        self.final[handle] = False
        self.ops.append(Op("post", handle, text, self._now()))
        return handle

    async def edit(self, handle: Any, text: str) -> None:
        self._maybe_fail("edit", handle, text)
        if handle not in self.messages:
            raise MessageGone("no such message")
        if self.final.get(handle):
            raise SinkError("edited after finalize")
        if self.messages[handle] == text:
            return  # an identical edit is a no-op (the sink contract)
        self.messages[handle] = text
        self.ops.append(Op("edit", handle, text, self._now()))

    async def finalize(self, handle: Any | None, text: str) -> None:
        self._maybe_fail("finalize", handle, text)
        if handle is None:
            handle = next(self._ids)
        elif handle not in self.messages:
            raise MessageGone("no such message")
        self.messages[handle] = text
        self.final[handle] = True
        self.ops.append(Op("finalize", handle, text, self._now()))

    async def typing(self) -> None:
        self.ops.append(Op("typing", None, "", self._now()))

    async def show_approval(self, request: ApprovalRequest) -> None:
        self._maybe_fail("approval", None, request.describe())
        text = f"{request.describe()} -> {request.outcome()}"
        self.approvals.append(text)
        self.ops.append(Op("approval", request.id, text, self._now()))

    async def send_file(self, path: Path, caption: str = "") -> None:
        self.files.append(path.name)
        self.ops.append(Op("file", None, path.name, self._now()))

    # -- views ---------------------------------------------------------------
    def visible(self) -> list[str]:
        """Message texts in the order they were created."""
        return [self.messages[h] for h in sorted(self.messages)]

    def text_ops(self) -> list[Op]:
        return [o for o in self.ops if o.name in ("post", "edit", "finalize") and o.ok]
