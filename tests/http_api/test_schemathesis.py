"""Schemathesis against the app's own OpenAPI schema, served by uvicorn: no 5xx anywhere.

Bounded and deterministic: a few derandomized examples per operation, positive
and negative, with a valid API key; turn routes hit the real CLI and the fake model.
"""

from __future__ import annotations

import asyncio
from typing import Any

import hypothesis
import hypothesis.errors
import schemathesis
from hypothesis import HealthCheck, Phase
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error

from adapters.http_api.models import is_user_id

from .conftest import ADMIN_KEY, KEY, Api

EXAMPLES = 5
AUTH = {"Authorization": f"Bearer {KEY}"}


def _prepare(case: Any) -> Any:
    if isinstance(case.body, dict) and "chat" in case.operation.path:
        # A per-request timeout shorter than a cold Claude Code start is *meant* to answer 504.
        case.body.pop("timeout", None)
        # Valid user ids share one warm Claude Code process (odd ids are fuzzed by the other routes).
        user_id = case.body.get("user_id")
        if is_user_id(user_id):
            case.body["user_id"] = "fuzz-user"
        if "text" in case.body and "message" in case.body:  # both names of the message: they would differ
            del case.body["message"]
    return case


def run_schemathesis(
    raw_schema: dict[str, Any], base_url: str, headers: dict[str, str] = AUTH
) -> tuple[int, list[str]]:
    """Run every operation; returns (cases run, failures). Blocking: call it in a thread."""
    schema = schemathesis.openapi.from_dict(raw_schema)
    failures: list[str] = []
    count = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @hypothesis.settings(
                max_examples=EXAMPLES,
                derandomize=True,
                deadline=None,
                database=None,
                phases=[Phase.explicit, Phase.generate],
                suppress_health_check=list(HealthCheck),
            )
            @hypothesis.given(case=operation.as_strategy(generation_mode=mode).map(_prepare))
            def check(case: Any) -> None:
                nonlocal count
                count += 1
                response = case.call(base_url=base_url, headers=headers, timeout=120)
                case.validate_response(response, checks=[not_a_server_error])

            try:
                check()
            except hypothesis.errors.Unsatisfiable:
                pass  # nothing to make invalid (no parameters, no body)
            except Exception as exc:  # hypothesis re-raises the first failing example
                failures.append(f"{operation.label} [{mode.value}]: {exc}")
    return count, failures


async def test_schemathesis_finds_no_server_error(api: Api) -> None:
    raw = (await api.client.get("/openapi.json")).json()
    count, failures = await asyncio.to_thread(run_schemathesis, raw, api.base_url)
    assert count >= 28 * 2
    assert failures == [], "\n\n".join(failures)


async def test_schemathesis_finds_no_server_error_in_the_admin_routes(make_api: Any) -> None:
    async def reload() -> dict[str, list[str]]:
        return {"api": []}

    async with make_api(admin_keys=[ADMIN_KEY], admin_bots=["team_tg"], reload=reload) as api:
        raw = (await api.client.get("/openapi.json")).json()
        raw["paths"] = {path: ops for path, ops in raw["paths"].items() if path.startswith("/admin")}
        admin = {"Authorization": f"Bearer {ADMIN_KEY}"}
        count, failures = await asyncio.to_thread(run_schemathesis, raw, api.base_url, admin)
    assert count >= 4 * 2
    assert failures == [], "\n\n".join(failures)
