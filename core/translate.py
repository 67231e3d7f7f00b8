"""Claude Agent SDK messages -> ccbridge's normalized turn events.

Only the top-level conversation is shown (sub-agent traffic, which carries a
``parent_tool_use_id``, is left out). Unknown message types are skipped, so a
newer SDK adding messages does not break a turn.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from claude_agent_sdk import (
    AssistantMessage,
    ResultMessage,
    StreamEvent,
    SystemMessage,
    TextBlock,
    ToolResultBlock,
    ToolUseBlock,
    UserMessage,
)

from .events import AgentEvent, AgentRetrying, TextDelta, ToolCallRecord, ToolResult, ToolUse, TurnResult

log = logging.getLogger(__name__)

_SUMMARY_LEN = 120


def summarize_tool_input(name: str, tool_input: dict[str, Any]) -> str:
    """A short, single-line description of a tool call ("ls -la", "src/app.py")."""
    preferred = {
        "Bash": "command",
        "Read": "file_path",
        "Write": "file_path",
        "Edit": "file_path",
        "MultiEdit": "file_path",
        "NotebookEdit": "notebook_path",
        "Glob": "pattern",
        "Grep": "pattern",
        "WebFetch": "url",
        "WebSearch": "query",
        "Task": "description",
        "Agent": "description",
    }.get(name)
    value: Any = tool_input.get(preferred) if preferred else None
    if value is None:
        value = next((v for v in tool_input.values() if isinstance(v, str) and v), None)
    if value is None:
        value = json.dumps(tool_input, ensure_ascii=False) if tool_input else ""
    return _one_line(str(value))


def summarize_tool_output(content: Any) -> str:
    if isinstance(content, list):
        content = " ".join(str(c.get("text", "")) for c in content if isinstance(c, dict))
    return _one_line(str(content or ""))


def _one_line(text: str, limit: int = _SUMMARY_LEN) -> str:
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


class TurnTranslator:
    """Stateful translation of one turn's SDK messages."""

    def __init__(self) -> None:
        self.blocks: list[str] = []  # text blocks of the turn, in order
        self.tool_calls: list[ToolCallRecord] = []
        self._tool_names: dict[str, int] = {}  # tool_use_id -> index in tool_calls
        self._streamed_messages: set[str] = set()
        self._current_message: str | None = None
        self._block_open = False
        self._separate_next = False
        self._error_text: str | None = None
        self.interrupt_requested = False

    @property
    def text(self) -> str:
        return "\n\n".join(b for b in self.blocks if b.strip())

    def feed(self, message: Any) -> list[AgentEvent]:
        if isinstance(message, StreamEvent):
            return self._stream_event(message)
        if isinstance(message, AssistantMessage):
            return self._assistant(message)
        if isinstance(message, UserMessage):
            return self._user(message)
        if isinstance(message, ResultMessage):
            return [self._result(message)]
        if isinstance(message, SystemMessage) and message.subtype == "api_retry":
            return [_retrying(message.data)]
        log.debug("skipping SDK message %s", type(message).__name__)
        return []

    def _start_block(self) -> bool:
        """Open a new text block; True when earlier text needs separating from it."""
        self.blocks.append("")
        return any(b.strip() for b in self.blocks[:-1])

    def _stream_event(self, msg: StreamEvent) -> list[AgentEvent]:
        if msg.parent_tool_use_id is not None:
            return []
        event = msg.event
        etype = event.get("type")
        if etype == "message_start":
            self._current_message = (event.get("message") or {}).get("id")
            self._block_open = False
        elif etype == "content_block_start":
            self._block_open = (event.get("content_block") or {}).get("type") == "text"
            if self._block_open:
                self._separate_next = self._start_block()
                if self._current_message:
                    self._streamed_messages.add(self._current_message)
        elif etype == "content_block_delta":
            delta = event.get("delta") or {}
            if delta.get("type") == "text_delta" and delta.get("text"):
                if not self._block_open:
                    self._separate_next = self._start_block()
                    self._block_open = True
                self.blocks[-1] += delta["text"]
                new_block, self._separate_next = self._separate_next, False
                return [TextDelta(delta["text"], new_block=new_block)]
        elif etype == "content_block_stop":
            self._block_open = False
        return []

    def _assistant(self, msg: AssistantMessage) -> list[AgentEvent]:
        if msg.parent_tool_use_id is not None:
            return []
        events: list[AgentEvent] = []
        streamed = msg.message_id is not None and msg.message_id in self._streamed_messages
        for block in msg.content:
            if isinstance(block, TextBlock):
                if msg.error is not None:
                    # A synthetic message the CLI writes for API failures.
                    self._error_text = block.text
                elif not streamed and block.text:
                    new_block = self._start_block()
                    self.blocks[-1] = block.text
                    events.append(TextDelta(block.text, new_block=new_block))
            elif isinstance(block, ToolUseBlock):
                summary = summarize_tool_input(block.name, block.input)
                self._tool_names[block.id] = len(self.tool_calls)
                self.tool_calls.append(ToolCallRecord(block.name, summary))
                events.append(ToolUse(block.id, block.name, summary, dict(block.input)))
        return events

    def _user(self, msg: UserMessage) -> list[AgentEvent]:
        if msg.parent_tool_use_id is not None or isinstance(msg.content, str):
            return []
        events: list[AgentEvent] = []
        for block in msg.content:
            if isinstance(block, ToolResultBlock):
                index = self._tool_names.get(block.tool_use_id)
                name = self.tool_calls[index].name if index is not None else "tool"
                if index is not None:
                    self.tool_calls[index].is_error = bool(block.is_error)
                events.append(
                    ToolResult(block.tool_use_id, name, bool(block.is_error), summarize_tool_output(block.content))
                )
        return events

    def _result(self, msg: ResultMessage) -> TurnResult:
        interrupted = (msg.terminal_reason or "").startswith("aborted") or (
            self.interrupt_requested and bool(msg.is_error)
        )
        error = None
        if msg.is_error and not interrupted:
            error = self._error_text or msg.result or "; ".join(msg.errors or []) or msg.subtype
            if msg.subtype == "error_max_turns":
                error = "the turn hit its max_turns limit"
            elif msg.subtype == "error_max_budget_usd":
                error = "the turn hit its max_budget_usd limit"
        return TurnResult(
            text=self.text,
            session_id=msg.session_id,
            is_error=bool(msg.is_error) and not interrupted,
            error=error,
            interrupted=interrupted,
            cost_usd=msg.total_cost_usd,
            usage=msg.usage,
            duration_ms=msg.duration_ms,
            num_turns=msg.num_turns,
            tool_calls=list(self.tool_calls),
        )


def _retrying(data: dict[str, Any]) -> AgentRetrying:
    """Claude Code's ``api_retry`` system message: the model API failed and the CLI retries."""

    def number(name: str) -> float | None:
        value = data.get(name)
        return float(value) if isinstance(value, (int, float)) else None

    status = number("error_status")
    retries = number("max_retries")
    event = AgentRetrying(
        attempt=int(number("attempt") or 1),
        max_retries=int(retries) if retries is not None else None,
        delay=(number("retry_delay_ms") or 0.0) / 1000,
        status=int(status) if status is not None else None,
        reason=str(data.get("error") or ""),
    )
    log.warning(
        "model API %s (status %s): Claude Code retries (%d/%s) in %.1fs",
        event.reason or "error",
        event.status,
        event.attempt,
        event.max_retries,
        event.delay,
    )
    return event
