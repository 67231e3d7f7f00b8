"""Async-mode tasks: an in-memory, bounded, expiring registry.

A task is one turn run in the background; it is readable until ``task_ttl``
seconds after it finished, and at most ``max_tasks`` are remembered (the oldest
finished ones are forgotten first). Tasks do not survive a restart; the turn
itself is recorded in the session's history like any other.

With several instances (``coordination: redis``), each task is also published as the API shows it
(its ``renderers``' views) to the shared notes whenever it changes, so a poll landing on another
instance finds it (:meth:`TaskRegistry.shared`).
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

from core import ApprovalRequest, ConversationKey
from core.coordination import SharedNotes

from .callback_hosts import literal_refusal
from .callbacks import CallbackSender, Delivery
from .errors import ApiError
from .models import CallbackInfo, ErrorInfo, TaskState, TaskStatus, approval_out, chat_out, utc
from .turns import TurnAnswer, TurnRunner, error_status

log = logging.getLogger(__name__)


@dataclass
class Task:
    id: str
    user_id: str
    runner: TurnRunner
    created_at: float = field(default_factory=time.time)
    completed_at: float | None = None
    outcome: TurnAnswer | None = None
    callback: Delivery | None = None
    worker: asyncio.Task[None] | None = None
    labels: dict[str, str] = field(default_factory=dict)  # adapter-specific notes (compat session label)

    @property
    def status(self) -> TaskState:
        if self.outcome is None:
            return "running"
        return "completed" if self.outcome.ok else "failed"


def task_out(task: Task, pending: Sequence[ApprovalRequest] = ()) -> TaskStatus:
    """``task`` as the API shows it; ``pending``: the approvals its turn waits for (while it runs)."""
    outcome = task.outcome
    error = None
    if outcome is not None and not outcome.ok:
        _, code = error_status(outcome)
        error = ErrorInfo(
            code=code,
            message=outcome.error or "the turn failed",
            session_id=outcome.session_id or None,
            text=outcome.text,
            cost_usd=outcome.cost_usd,
        )
    cb = task.callback
    return TaskStatus(
        task_id=task.id,
        user_id=task.user_id,
        status=task.status,
        created_at=utc(task.created_at),
        completed_at=utc(task.completed_at) if task.completed_at else None,
        result=chat_out(outcome) if outcome is not None and outcome.ok else None,
        error=error,
        pending_approvals=[approval_out(r) for r in pending] if outcome is None else [],
        callback=CallbackInfo(
            url=cb.url,
            delivered=cb.delivered,
            attempts=cb.attempts,
            last_status=cb.last_status,
            last_error=cb.last_error,
        )
        if cb
        else None,
    )


@dataclass(frozen=True)
class SharedTask:
    """A task another instance runs (or ran), as it published it."""

    user_id: str
    key: ConversationKey
    running: bool
    views: dict[str, dict[str, Any]]  # renderer name -> the task as that API shows it (JSON data)


class TaskRegistry:
    def __init__(
        self,
        max_tasks: int,
        ttl: float,
        sender: CallbackSender | None = None,
        *,
        notes: SharedNotes | None = None,
        renderers: Mapping[str, Callable[[Task], BaseModel]] | None = None,
    ) -> None:
        self.max_tasks = max_tasks
        self.ttl = ttl
        self.sender = sender
        self.notes = notes  # several instances: where tasks are published for the others
        self.renderers = dict(renderers or {})
        self._tasks: OrderedDict[str, Task] = OrderedDict()

    def __len__(self) -> int:
        return len(self._tasks)

    def check_room(self, callback_url: str | None = None) -> None:
        """Raise if a turn could not become a task (callbacks off or refused, registry full)."""
        if callback_url:
            self._check_callback(callback_url)
        self._make_room()

    def submit(
        self,
        start: Callable[[], TurnRunner],
        user_id: str,
        callback_url: str | None = None,
        labels: dict[str, str] | None = None,
    ) -> Task:
        """Check there is room, start the turn with ``start()`` and track it as a task.

        Nothing awaits between the check, the start and the record, so a turn never
        runs without its task (and a refused task never starts a turn).
        """
        self.check_room(callback_url)
        runner = start()
        task = Task(
            id=secrets.token_urlsafe(16),
            user_id=user_id,
            runner=runner,
            callback=Delivery(callback_url) if callback_url else None,
            labels=dict(labels or {}),
        )
        self._tasks[task.id] = task
        task.worker = asyncio.create_task(self._work(task), name=f"ccbridge-http-task-{task.id}")
        return task

    def _check_callback(self, url: str) -> None:
        if self.sender is None:
            raise ApiError(
                400,
                "callbacks_disabled",
                "callback_url needs the server's callback_secret to be configured (callbacks are signed)",
            )
        if not self.sender.allow_private:
            reason = literal_refusal(url)
            if reason is not None:
                raise ApiError(
                    400,
                    "callback_url_forbidden",
                    f"callback_url: {reason}; callbacks go to public addresses only "
                    "(set callback_allow_private: true to allow private networks)",
                )

    def get(self, task_id: str) -> Task | None:
        self._expire()
        return self._tasks.get(task_id)

    async def shutdown(self) -> None:
        workers = [t.worker for t in self._tasks.values() if t.worker and not t.worker.done()]
        for worker in workers:
            worker.cancel()
        if workers:
            await asyncio.wait(workers)
        for task in self._tasks.values():
            await task.runner.close()
        if self.sender is not None:
            await self.sender.aclose()

    async def _work(self, task: Task) -> None:
        try:
            await self._publish(task)
            task.outcome = await task.runner.result()
        finally:
            task.completed_at = time.time()
            if task.outcome is None:  # cancelled (shutdown): make sure the turn stops
                await task.runner.close()
        await self._publish(task)
        if task.callback is not None and self.sender is not None:
            body = task_out(task).model_dump_json().encode("utf-8")
            event = "task.completed" if task.outcome.ok else "task.failed"
            await self.sender.send(task.callback, body, event=event, task_id=task.id)
            await self._publish(task)  # with the callback's delivery

    async def _publish(self, task: Task) -> None:
        if self.notes is None or not self.renderers:
            return
        spec = task.runner.spec
        running = task.outcome is None
        data = {
            "user_id": task.user_id,
            "key": str(spec.key),
            "running": running,
            "views": {name: render(task).model_dump(mode="json") for name, render in self.renderers.items()},
        }
        ttl = self.ttl + ((spec.timeout or 3600.0) if running else 0.0)
        try:
            await self.notes.put(f"task:{task.id}", json.dumps(data), ttl)
        except Exception as exc:  # noqa: BLE001 (the task runs on; other instances just do not see it)
            log.warning("could not publish task %s to the other instances: %r", task.id, exc)

    async def shared(self, task_id: str) -> SharedTask | None:
        """A task another instance published (None: unknown, expired, or the notes unreachable)."""
        if self.notes is None:
            return None
        try:
            raw = await self.notes.get(f"task:{task_id}")
        except Exception as exc:  # noqa: BLE001
            log.warning("could not look task %s up on the other instances: %r", task_id, exc)
            return None
        if raw is None:
            return None
        data = json.loads(raw)
        return SharedTask(data["user_id"], ConversationKey.parse(data["key"]), bool(data["running"]), data["views"])

    def _expire(self) -> None:
        now = time.time()
        for task_id, task in list(self._tasks.items()):
            if task.completed_at is not None and now - task.completed_at > self.ttl:
                del self._tasks[task_id]

    def _make_room(self) -> None:
        self._expire()
        while len(self._tasks) >= self.max_tasks:
            finished = next((tid for tid, t in self._tasks.items() if t.completed_at is not None), None)
            if finished is None:
                raise ApiError(
                    429,
                    "too_many_tasks",
                    f"{len(self._tasks)} tasks are still running; retry later",
                    headers={"Retry-After": "5"},
                )
            del self._tasks[finished]
