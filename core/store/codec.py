"""Records <-> plain dicts (JSON-safe), shared by every serializing backend."""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Any

from ..events import ToolCallRecord
from ..keys import ConversationKey
from .records import Conversation, TurnRecord

CONVERSATION_FIELDS = (
    "key",
    "platform",
    "owner",
    "thread",
    "bot",
    "session_id",
    "cwd",
    "model",
    "created_at",
    "last_active_at",
    "message_count",
    "status",
    "metadata",
    "instance_id",
    "total_cost_usd",
    "cli_cost_usd",
    "fence",
)
TURN_FIELDS = (
    "turn_id",
    "key",
    "session_id",
    "user_id",
    "user_text",
    "reply_text",
    "tool_calls",
    "cost_usd",
    "duration_ms",
    "status",
    "error",
    "started_at",
    "finished_at",
    "instance_id",
)


def conversation_to_row(conv: Conversation) -> dict[str, Any]:
    return {
        "key": str(conv.key),
        "platform": conv.key.platform,
        "owner": conv.key.owner,
        "thread": conv.key.thread,
        "bot": conv.key.bot,
        "session_id": conv.session_id,
        "cwd": conv.cwd,
        "model": conv.model,
        "created_at": conv.created_at,
        "last_active_at": conv.last_active_at,
        "message_count": conv.message_count,
        "status": conv.status,
        "metadata": json.dumps(conv.metadata, ensure_ascii=False),
        "instance_id": conv.instance_id,
        "total_cost_usd": conv.total_cost_usd,
        "cli_cost_usd": conv.cli_cost_usd,
        "fence": conv.fence,
    }


def conversation_from_row(row: dict[str, Any]) -> Conversation:
    return Conversation(
        key=ConversationKey.parse(row["key"]),
        session_id=row["session_id"],
        cwd=row["cwd"],
        model=row["model"] or None,
        created_at=float(row["created_at"]),
        last_active_at=float(row["last_active_at"]),
        message_count=int(row["message_count"]),
        status=row["status"],
        metadata=json.loads(row["metadata"] or "{}"),
        instance_id=row.get("instance_id") or None,
        total_cost_usd=float(row.get("total_cost_usd") or 0.0),
        cli_cost_usd=float(row.get("cli_cost_usd") or 0.0),
        fence=int(row.get("fence") or 0),
    )


def turn_to_row(turn: TurnRecord) -> dict[str, Any]:
    return {
        "turn_id": turn.turn_id,
        "key": str(turn.key),
        "session_id": turn.session_id,
        "user_id": turn.user_id,
        "user_text": turn.user_text,
        "reply_text": turn.reply_text,
        "tool_calls": json.dumps([asdict(t) for t in turn.tool_calls], ensure_ascii=False),
        "cost_usd": turn.cost_usd,
        "duration_ms": turn.duration_ms,
        "status": turn.status,
        "error": turn.error,
        "started_at": turn.started_at,
        "finished_at": turn.finished_at,
        "instance_id": turn.instance_id,
    }


def turn_from_row(row: dict[str, Any]) -> TurnRecord:
    return TurnRecord(
        key=ConversationKey.parse(row["key"]),
        session_id=row["session_id"],
        user_id=row["user_id"],
        user_text=row["user_text"],
        reply_text=row["reply_text"],
        tool_calls=[ToolCallRecord(**t) for t in json.loads(row["tool_calls"] or "[]")],
        cost_usd=None if row["cost_usd"] is None else float(row["cost_usd"]),
        duration_ms=None if row["duration_ms"] is None else int(row["duration_ms"]),
        status=row["status"],
        error=row["error"],
        started_at=float(row["started_at"]),
        finished_at=None if row["finished_at"] is None else float(row["finished_at"]),
        turn_id=row["turn_id"],
        instance_id=row.get("instance_id") or None,
    )
