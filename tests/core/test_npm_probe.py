"""Claude Code's ``npm root -g`` probe is answered once for all of its starts; npm itself still works."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from pathlib import Path

from core import Agent, Decision, Sections
from core.runtime.npm_probe import npm_probe_dir
from tests.fakes.anthropic_api import FakeAnthropicAPI, ToolCall
from tests.helpers import eventually

FAKE_NPM = """#!/bin/sh
echo "$@" >> {log} 2>/dev/null
if [ "$1" = root ]; then echo /opt/fake-global/lib/node_modules; exit 0; fi
echo "fake npm $*"
"""


def fake_npm(tmp_path: Path) -> tuple[str, Path]:
    """A PATH whose first ``npm`` logs its arguments to the returned file."""
    bin_dir, log = tmp_path / "fakebin", tmp_path / "npm-calls.log"
    bin_dir.mkdir()
    npm = bin_dir / "npm"
    npm.write_text(FAKE_NPM.format(log=log))
    npm.chmod(0o755)
    return f"{bin_dir}{os.pathsep}{os.environ['PATH']}", log


def calls(log: Path) -> list[str]:
    return log.read_text().splitlines() if log.exists() else []


def test_the_answer_is_kept_and_anything_else_goes_to_the_real_npm(tmp_path: Path) -> None:
    path, log = fake_npm(tmp_path)
    probe = npm_probe_dir(tmp_path / "probe", path)
    assert probe is not None and calls(log) == ["root -g"]  # npm asked once, at start-up
    shim = str(probe / "npm")
    answered = subprocess.run([shim, "root", "-g"], capture_output=True, text=True, check=True)
    assert answered.stdout == "/opt/fake-global/lib/node_modules\n"
    assert calls(log) == ["root -g"]  # answered without starting npm
    passed = subprocess.run([shim, "install", "left pad"], capture_output=True, text=True, check=True)
    assert passed.stdout == "fake npm install left pad\n"
    assert calls(log) == ["root -g", "install left pad"]


def test_no_npm_or_a_failing_npm_leaves_the_cli_to_ask_itself(tmp_path: Path) -> None:
    assert npm_probe_dir(tmp_path / "none", str(tmp_path / "empty")) is None
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "npm").write_text("#!/bin/sh\nexit 3\n")
    (broken / "npm").chmod(0o755)
    assert npm_probe_dir(tmp_path / "probe", str(broken)) is None


async def test_claude_code_starts_without_asking_npm_and_sandboxed_bash_still_finds_it(
    make_sections: Callable[..., Sections], fake_api: FakeAnthropicAPI, tmp_path: Path
) -> None:
    path, log = fake_npm(tmp_path)

    async def allow(request: object) -> Decision:
        return Decision.ALLOW_ONCE

    async with Agent(make_sections(agent={"env": {"PATH": path}})) as agent:
        options = agent.runtime.options
        assert agent.runtime.sandbox.active
        await eventually(lambda: options.npm_probe is not None, what="the npm answer kept")
        assert calls(log) == ["root -g"]

        probe, options.npm_probe = options.npm_probe, None  # without it, a Claude Code start asks npm
        await agent.chat("hello", user_id="first")
        assert calls(log) == ["root -g", "root -g"]

        options.npm_probe = probe
        fake_api.rules["which npm?"] = [ToolCall("Bash", {"command": "npm --version"})]
        result = await agent.chat("which npm?", user_id="second", on_approval=allow)  # a new Claude Code start
        assert not result.is_error, result.error
        assert calls(log) == ["root -g", "root -g"]  # this start was answered from the kept answer
        tool_output = str(fake_api.requests[-1].tool_results())
        assert "fake npm --version" in tool_output  # inside the sandbox, Bash runs the real npm
