"""The Dockerfile and compose.yaml, checked by parsing them (no Docker daemon needed).

Each ccbridge service's environment (the image's ``ENV`` plus the service's own, with compose's
``${VAR:-default}`` interpolation) is loaded with the real configuration model over the config
file compose mounts (config.yaml.example), so a misspelled ``CCBRIDGE_*`` key, an unknown section or
a path outside the ``/data`` volume fails here; its command is parsed by ``run_bot.parse_args``.
"""

from __future__ import annotations

import os
import re
import shlex
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from core import load_config
from core.config import env_override_paths, unknown_env_sections

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "config.yaml.example"
# CCBRIDGE_ variables that are not settings: what the health check probes, and what the example config reads
NOT_SETTINGS = {"CCBRIDGE_HEALTHCHECK_URL"} | set(re.findall(r"\$\{(CCBRIDGE_\w+?)(?::-[^}]*)?\}", EXAMPLE.read_text()))


def dockerfile() -> list[tuple[str, str]]:
    """(instruction, arguments) pairs, continuation lines joined, comments left out."""
    text = re.sub(r"\\\n", " ", (REPO / "Dockerfile").read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            instruction, _, args = line.partition(" ")
            out.append((instruction.upper(), args.strip()))
    return out


def image_env() -> dict[str, str]:
    env: dict[str, str] = {}
    for instruction, args in dockerfile():
        if instruction == "ENV":
            for item in shlex.split(args):
                name, _, value = item.partition("=")
                env[name] = value
    return env


def compose() -> dict[str, Any]:
    return yaml.safe_load((REPO / "compose.yaml").read_text())  # merge keys (<<: *ccbridge) resolved


def interpolate(value: str, env: dict[str, str]) -> str:
    """Compose's ``${VAR}`` / ``${VAR:-default}`` interpolation, from ``env`` (here: nothing set)."""

    def repl(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        return env.get(name) or (default or "")

    return re.sub(r"\$\{(\w+)(?::-([^}]*))?\}", repl, value).replace("$$", "$")


def ccbridge_services() -> dict[str, dict[str, Any]]:
    return {name: svc for name, svc in compose()["services"].items() if svc.get("build") == "."}


def service_env(service: dict[str, Any]) -> dict[str, str]:
    own = {k: interpolate(str(v), {}) for k, v in (service.get("environment") or {}).items()}
    return {**image_env(), **own}


def test_the_image_is_slim_non_root_with_the_sandbox_and_a_data_volume() -> None:
    steps = dockerfile()
    instructions = dict(steps)  # the last of each
    assert [args for ins, args in steps if ins == "FROM"] == ["python:3.11-slim"]
    run = " ".join(args for ins, args in steps if ins == "RUN")
    assert re.search(r"apt-get install [^&]*\bbubblewrap\b[^&]*\bsocat\b", run)
    assert "pip install '.[all]'" in run
    user = instructions["USER"]
    assert user not in ("root", "0") and re.search(rf"useradd .*\b{user}\b", run)
    assert yaml.safe_load(instructions["VOLUME"]) == ["/data"]
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert yaml.safe_load(instructions["ENTRYPOINT"]) == ["ccbridge"] and "ccbridge" in scripts
    assert "/health" in instructions["HEALTHCHECK"] or "CCBRIDGE_HEALTHCHECK_URL" in instructions["HEALTHCHECK"]
    copied = {source for ins, args in steps if ins == "COPY" for source in args.split()[:-1]}
    assert copied == {"pyproject.toml", "README.md", "LICENSE", "run_bot.py", "core", "adapters", "bots"}
    assert all((REPO / source).exists() for source in copied)


def test_secrets_and_local_state_stay_out_of_the_build_context() -> None:
    ignored = {line.strip() for line in (REPO / ".dockerignore").read_text().splitlines() if line.strip()}
    assert {".env", "config.yaml", ".venv", ".git", "data", "workspaces"} <= ignored


@pytest.mark.parametrize("name", sorted(ccbridge_services()))
def test_each_service_environment_is_real_settings(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    env = service_env(ccbridge_services()[name])
    for var in list(os.environ):
        if var.startswith(("CCBRIDGE_", "DATABASE_URL", "REDIS_URL")):
            monkeypatch.delenv(var)
    for var, value in env.items():
        monkeypatch.setenv(var, value)
    settings = {v for v in env if v.startswith("CCBRIDGE_")} - NOT_SETTINGS
    assert set(env_override_paths(env).values()) >= {v for v in settings if env[v] != ""}, "not a setting"
    assert unknown_env_sections(env) == []
    config = load_config(EXAMPLE)  # unknown keys inside a section fail here (extra="forbid")
    assert config.warnings == []
    sections = config.resolved()
    data = Path("/data")
    assert sections.workspace.base_dir.is_relative_to(data)
    assert sections.agent.sessions_dir.is_relative_to(data)
    if sections.store.backend == "sqlite":
        assert sections.store.path.is_relative_to(data)
    for bot in config.bots:
        config.for_bot(bot)


def test_the_default_service_is_one_instance_with_sqlite(monkeypatch: pytest.MonkeyPatch) -> None:
    service = compose()["services"]["ccbridge"]
    assert "profiles" not in service
    for var, value in service_env(service).items():
        monkeypatch.setenv(var, value)
    store = load_config(EXAMPLE).resolved().store
    assert store.backend == "sqlite" and store.path == Path("/data/ccbridge.db")
    assert any(v.endswith(":/data") for v in service["volumes"])


def test_compose_gives_running_turns_their_drain_before_killing_the_container() -> None:
    from run_bot import STOP_GRACE

    drain = load_config(EXAMPLE).drain_timeout
    for name, service in ccbridge_services().items():
        grace = service["stop_grace_period"]
        assert re.fullmatch(r"\d+s", grace), (name, grace)
        assert int(grace[:-1]) > drain + STOP_GRACE, name  # else Docker kills it while turns are being stopped


def test_the_shared_profile_uses_postgres_and_redis_services(monkeypatch: pytest.MonkeyPatch) -> None:
    services = compose()["services"]
    shared = {name for name, svc in services.items() if "shared" in (svc.get("profiles") or [])}
    assert {"postgres", "redis", "ccbridge-shared"} <= shared
    service = services["ccbridge-shared"]
    env = service_env(service)
    for var, value in env.items():
        monkeypatch.setenv(var, value)
    config = load_config(EXAMPLE)
    store, coordination = config.store, config.coordination
    assert store.backend == "postgres" and coordination.backend == "redis"
    dsn = store.dsn.get_secret_value() if store.dsn else ""
    assert re.fullmatch(r"postgresql://ccbridge:[^@]+@postgres:5432/ccbridge", dsn)
    assert env["REDIS_URL"] == "redis://redis:6379/0"
    assert set(service["depends_on"]) == {"postgres", "redis"}
    db = {k: interpolate(str(v), {}) for k, v in services["postgres"]["environment"].items()}
    assert dsn == f"postgresql://{db['POSTGRES_USER']}:{db['POSTGRES_PASSWORD']}@postgres:5432/{db['POSTGRES_DB']}"


@pytest.mark.parametrize("name", sorted(ccbridge_services()))
def test_each_service_command_runs_the_mounted_config(name: str) -> None:
    from run_bot import parse_args

    service = ccbridge_services()[name]
    args = parse_args(service["command"])
    mounts = {v.split(":")[1]: v.split(":")[0] for v in service["volumes"]}
    assert str(args.config) in mounts and mounts[str(args.config)] == "./config.yaml"
    assert any(v.split(":")[1] == "/data" for v in service["volumes"])
    assert {"path": ".env", "required": False} in service["env_file"]


def test_env_example_names_what_the_example_config_reads() -> None:
    """Every secret the example config reads (outside its comments) has a line in .env.example."""
    code = "\n".join(
        line.split(" #", 1)[0] for line in EXAMPLE.read_text().splitlines() if not line.lstrip().startswith("#")
    )
    example_vars = set(re.findall(r"\$\{(\w+)", code))
    documented = set(re.findall(r"^#?\s*(\w+)=", (REPO / ".env.example").read_text(), re.M))
    assert example_vars and example_vars <= documented, example_vars - documented


def test_license_matches_pyproject() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert project["license"] == {"text": "MIT"}
    assert (REPO / "LICENSE").read_text().startswith("MIT License")
    changelog = (REPO / "CHANGELOG.md").read_text()
    assert f"## [{project['version']}]" in changelog
