"""The commands the README gives people, read from the README itself, so that
a README edit that breaks a command breaks a test (and docs and tests cannot
drift)."""
from __future__ import annotations

import os
import re
import shlex
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def _lines() -> list[str]:
    """Every line of a ```bash block (continuations joined, comments dropped),
    and every `code span` of the prose and tables."""
    lines: list[str] = []
    for block in re.findall(r"```bash\n(.*?)```", README, re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = re.sub(r"\s+#\s.*$", "", line).strip()
            if line and not line.startswith("#"):
                lines.append(re.sub(r"\s+", " ", line))
    lines += re.findall(r"`([^`\n]+)`", re.sub(r"```.*?```", "", README, flags=re.S))
    return lines


def readme_commands(containing: str) -> list[str]:
    """The README's distinct command lines that contain ``containing``, in order."""
    found = [line for line in _lines() if containing in line]
    if not found:
        raise AssertionError(f"the README has no command with {containing!r}")
    return list(dict.fromkeys(found))


def readme_command(start: str) -> str:
    """The README's one command line that begins with ``start`` (longest if a
    table cell repeats a shorter form of a block's line)."""
    found = [line for line in readme_commands(start) if line.startswith(start)]
    if not found:
        raise AssertionError(f"the README has no command starting {start!r}")
    return max(found, key=len)


def split(command: str) -> tuple[dict[str, str], list[str]]:
    """``A=1 B=2 prog args`` as ({A: 1, B: 2}, [prog, args])."""
    words = shlex.split(command)
    assigns = {}
    while words and re.match(r"^[A-Z_][A-Z0-9_]*=", words[0]):
        name, _, value = words.pop(0).partition("=")
        assigns[name] = value
    return assigns, words


def person_env(env: dict[str, str]) -> dict[str, str]:
    """A person's shell: the service's settings, no PYTHONPATH, this Python's
    console scripts first on PATH."""
    base = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    path = f"{os.path.dirname(sys.executable)}{os.pathsep}{os.environ['PATH']}"
    return {**base, **env, "PATH": path}
