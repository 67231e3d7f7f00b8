"""Fixtures of the core tests that several modules share."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from core import Sections
from tests.core.test_projects import CHANNEL, repo


@pytest.fixture
def payments(tmp_path: Path) -> Path:
    return repo(tmp_path / "payments")


@pytest.fixture
def project_sections(make_sections: Callable[..., Sections], payments: Path) -> Sections:
    return make_sections(
        access={"allow_all": False, "allowlist": ["chat:*"], "admins": ["chat:boss"]},
        projects={"payments": {"path": str(payments), "places": [f"chat:{CHANNEL}"]}},
        agent={"allowed_tools": ["Bash"]},
    )
