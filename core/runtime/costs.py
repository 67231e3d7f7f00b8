"""A turn's own cost from what Claude Code reports: the session's running total, per process.

Claude Code's result carries ``total_cost_usd``, the session's total as this process knows it. A
process that resumes a session starts from the total saved in the session's transcript (a
``cost-state`` entry, written when a process exits cleanly), so a process killed before it could
save leaves the next one starting from an older total. Each warm client therefore keeps the total it
started from (read from the transcript it resumes) and the last one it reported; a turn's cost is
the difference.
"""

from __future__ import annotations

import json
from pathlib import Path


def restored_total(config_dir: Path, session_id: str) -> float | None:
    """The total a process resuming ``session_id`` starts from; None when its transcript is not here.

    (0.0 when the transcript holds no saved total: the process starts from nothing.)
    """
    transcripts = list((config_dir / "projects").glob(f"*/{session_id}.jsonl"))
    if not transcripts:
        return None
    total = 0.0
    try:
        with transcripts[0].open("rb") as lines:
            for line in lines:
                if b'"cost-state"' not in line:
                    continue
                try:
                    entry = json.loads(line)
                except ValueError:
                    continue
                if entry.get("type") == "cost-state" and entry.get("sessionId", session_id) == session_id:
                    value = entry.get("totalCostUSD")
                    if isinstance(value, int | float):
                        total = float(value)
    except OSError:
        return None
    return total


def turn_cost(reported: float, started_from: float) -> float:
    """This turn's cost: the reported total less the one before it (a total that went back: all of it)."""
    return reported - started_from if reported >= started_from else reported
