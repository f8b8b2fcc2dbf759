"""The shell blocks of the project's Markdown, so tests run the commands the docs show.

Every ```bash block of a checked document is preceded by a marker line naming it:
`<!-- docs-test: NAME -->` (a test runs it, `block(path, NAME)`) or `<!-- docs-test: skip: WHY -->`
(it cannot run here, e.g. it needs a Docker engine). `tests/unit/docs/` fails on a block without a
marker and on a named block no test asks for, so the docs cannot drift from the code.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHECKED = ("README.md", "deploy/README.md")
_MARKER = re.compile(r"<!--\s*docs-test:\s*(?P<what>.*?)\s*-->")
_FENCE = re.compile(r"^```(?P<lang>\S*)\s*$")


@dataclass(frozen=True)
class Block:
    path: str  # relative to the project root
    line: int  # 1-based line of the opening fence
    lang: str
    text: str
    name: str | None  # None: no marker
    skip: str | None  # the reason, for `skip: WHY`

    def commands(self) -> list[str]:
        """The block's commands: comment lines dropped, `\\` continuations joined."""
        commands: list[str] = []
        current = ""
        for raw in self.text.splitlines():
            line = raw.rstrip()
            if not current and (not line.strip() or line.lstrip().startswith("#")):
                continue
            if line.endswith("\\"):
                current += line[:-1].strip() + " "
                continue
            commands.append((current + line.strip()).strip() if current else line.strip())
            current = ""
        if current:
            commands.append(current.strip())
        return commands


def blocks(path: str) -> list[Block]:
    """Every fenced block of `path` (relative to the project root), with its marker if any."""
    lines = (ROOT / path).read_text().splitlines()
    found: list[Block] = []
    i = 0
    while i < len(lines):
        fence = _FENCE.match(lines[i])
        if not fence:
            i += 1
            continue
        end = i + 1
        while end < len(lines) and not lines[end].startswith("```"):
            end += 1
        marker = _marker_before(lines, i)
        name = skip = None
        if marker is not None:
            if marker.startswith("skip:"):
                skip = marker[len("skip:") :].strip()
            else:
                name = marker
        found.append(Block(path, i + 1, fence["lang"], "\n".join(lines[i + 1 : end]), name, skip))
        i = end + 1
    return found


def shell_blocks(path: str) -> list[Block]:
    return [b for b in blocks(path) if b.lang in ("bash", "sh", "shell", "console")]


def block(path: str, name: str) -> Block:
    """The shell block of `path` marked `<!-- docs-test: NAME -->`."""
    matches = [b for b in shell_blocks(path) if b.name == name]
    if len(matches) != 1:
        raise LookupError(f"{path}: {len(matches)} shell blocks marked docs-test: {name}")
    return matches[0]


def _marker_before(lines: list[str], fence_index: int) -> str | None:
    j = fence_index - 1
    while j >= 0 and not lines[j].strip():
        j -= 1
    if j < 0:
        return None
    match = _MARKER.search(lines[j])
    return match["what"] if match else None
