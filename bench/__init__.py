"""Latency benchmark of ccbridge: ``python -m bench`` (see bench/RESULTS.md).

Everything runs offline: the real Claude Code CLI bundled with claude-agent-sdk
talks to the fake Messages API (``tests.fakes.anthropic_api``), which answers at
once. What is measured is the bridge's own latency, not a model's.
"""
