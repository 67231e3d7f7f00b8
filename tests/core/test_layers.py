"""The rule of the layers, checked on the source: core/ knows no platform."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PLATFORM_SDKS = {"telegram", "slack_bolt", "slack_sdk", "discord", "lark_oapi", "fastapi", "starlette", "uvicorn"}
PLATFORM_NAMES = {"telegram", "slack", "discord", "feishu", "lark", "http", "api", "console"}


def modules(folder: str) -> list[Path]:
    return sorted((REPO / folder).rglob("*.py"))


def test_core_imports_no_platform_sdk() -> None:
    for path in modules("core"):
        for node in ast.walk(ast.parse(path.read_text())):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            for name in names:
                assert name.split(".")[0] not in PLATFORM_SDKS, f"{path.relative_to(REPO)} imports {name}"


def test_core_never_branches_on_a_platform_name() -> None:
    for path in modules("core"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Compare):
                for side in [node.left, *node.comparators]:
                    if isinstance(side, ast.Constant) and isinstance(side.value, str):
                        assert side.value.lower() not in PLATFORM_NAMES, (
                            f"{path.relative_to(REPO)}:{node.lineno} compares with {side.value!r}"
                        )


def test_adapters_do_not_import_each_other() -> None:
    adapters = {p.name for p in (REPO / "adapters").iterdir() if p.is_dir() and not p.name.startswith("_")}
    adapters |= {p.stem for p in (REPO / "adapters").glob("*.py") if p.stem != "__init__"}
    for name in adapters:
        folder = REPO / "adapters" / name
        files = list(folder.rglob("*.py")) if folder.is_dir() else [REPO / "adapters" / f"{name}.py"]
        for path in files:
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.ImportFrom) and node.module:
                    parts = node.module.split(".")
                    if parts[0] == "adapters" and len(parts) > 1:
                        assert parts[1] == name, f"{path.relative_to(REPO)} imports {node.module}"
