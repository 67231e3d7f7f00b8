"""Claude Code's ``npm root -g`` probe, answered once for all of its starts.

With the Bash sandbox on, every Claude Code start looks for sandbox-runtime's optional
helpers (the apply-seccomp binary, the JVM proxy agent) among the global npm packages,
running ``npm root -g``: a Node.js start of its own, 0.2-0.5 s of every cold turn on a
machine where npm is installed. ccbridge asks npm once, in the background at start-up,
and puts a small ``npm`` first on the CLI's PATH that gives that exact question the
answer kept and hands anything else to the real npm. The script lives under the
session directory, which the sandbox hides: Bash commands inside it find the real npm
at once (and outside a sandbox the script passes them on).
"""

from __future__ import annotations

import logging
import os
import shlex
import shutil
import subprocess
from pathlib import Path

from .processes import write_script

log = logging.getLogger(__name__)

_TIMEOUT = 15.0  # seconds npm may take to answer (it can be slow on a busy machine)

_SCRIPT = """#!/bin/sh
# ccbridge: Claude Code's sandbox asks `npm root -g` on every start; the answer, asked once at start-up.
if [ "$#" -eq 2 ] && [ "$1" = root ] && [ "$2" = -g ]; then
  printf '%s\\n' {root}
  exit 0
fi
exec {npm} "$@"
"""


def npm_probe_dir(directory: Path, path: str) -> Path | None:
    """Write the ``npm`` of this module into ``directory`` (blocking); None where npm is not on ``path``.

    ``path`` is the PATH the CLI gets: npm is found and asked there, as the CLI would.
    """
    npm = shutil.which("npm", path=path)
    if npm is None:
        return None
    try:
        done = subprocess.run(
            [npm, "root", "-g"],
            cwd="/",
            env={**os.environ, "PATH": path},
            stdin=subprocess.DEVNULL,  # never the console's terminal: Node.js would reset its mode on exit
            start_new_session=True,  # nor its Ctrl-C
            capture_output=True,
            text=True,
            timeout=_TIMEOUT,
            check=True,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        log.info("npm root -g failed (%r): Claude Code asks npm itself on every start", exc)
        return None
    root = done.stdout.strip()
    if not root or "\n" in root:
        return None
    directory.mkdir(parents=True, exist_ok=True)
    write_script(directory / "npm", _SCRIPT.format(root=shlex.quote(root), npm=shlex.quote(npm)), 0o755)
    return directory
