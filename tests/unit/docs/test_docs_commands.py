"""The commands README.md names in its prose and its `moments` synopsis exist as written.

Every `moments X ...` (inline code, or a line of the synopsis block) must name a subcommand whose
parser accepts each `--flag` shown; a lone `--flag` in README.md must belong to some subcommand;
`make X` must be a Makefile target and `DEMO_ARGS` flags must be the demo's. The shell blocks
themselves are run by tests (tests/unit/docs/test_docs_blocks.py sees to that).
"""

from __future__ import annotations

import re

import pytest

from jobs.cli import SUBCOMMANDS, build_parser
from moments_testing import docs

FLAG = re.compile(r"(?<![\w-])--[a-z][a-z0-9-]*")
INLINE = re.compile(r"`([^`]+)`")


def options() -> dict[str, set[str]]:
    """Each subcommand's option strings, from the real parsers."""
    parser = build_parser(load_subcommands=True)
    [subparsers] = [a for a in parser._actions if a.dest == "command"]
    return {
        name: {flag for action in sub._actions for flag in action.option_strings}
        for name, sub in subparsers.choices.items()
    }


OPTIONS = options()


def prose(path: str) -> str:
    """The document without its fenced blocks."""
    return re.sub(r"^```.*?^```", "", (docs.ROOT / path).read_text(), flags=re.S | re.M)


def spans(path: str) -> list[str]:
    return [" ".join(span.split()) for span in INLINE.findall(prose(path))]


def synopsis() -> list[str]:
    """The README's `moments` synopsis: one entry per command, continuation lines joined."""
    [block] = [
        b for b in docs.blocks("README.md") if b.lang == "text" and "moments validate" in b.text
    ]
    commands: list[str] = []
    for line in block.text.splitlines():
        if line.startswith("moments "):
            commands.append(line)
        elif line.strip():
            commands[-1] += " " + line.strip()
    return commands


def moments_commands() -> list[tuple[str, str]]:
    found = [(path, span) for path in docs.CHECKED for span in spans(path)]
    found += [("README.md synopsis", line) for line in synopsis()]
    return [(where, text) for where, text in found if re.match(r"moments [a-z]", text)]


@pytest.mark.parametrize("where,text", moments_commands(), ids=lambda v: str(v)[:60])
def test_moments_commands_and_their_flags_exist(where, text):
    command = text.split()[1]
    assert command in OPTIONS, f"{where}: `{text}`: no subcommand {command!r}"
    unknown = set(FLAG.findall(text)) - OPTIONS[command]
    assert not unknown, f"{where}: `{text}`: moments {command} has no {sorted(unknown)}"


def test_the_synopsis_lists_every_subcommand():
    assert [line.split()[1] for line in synopsis()] == list(SUBCOMMANDS)


def test_lone_flags_in_the_readme_belong_to_a_subcommand():
    every = set().union(*OPTIONS.values())
    lone = {
        flag for span in spans("README.md") if span.startswith("--") for flag in FLAG.findall(span)
    }
    assert lone, "the README names flags in its prose"
    assert lone - every == set()


def test_make_targets_exist():
    makefile = (docs.ROOT / "Makefile").read_text()
    targets = set(re.findall(r"^([A-Za-z][\w-]*):", makefile, flags=re.M))
    named = {
        span.split()[1]
        for path in docs.CHECKED
        for span in spans(path)
        if re.match(r"make [a-z]", span)
    }
    assert named, "the documents name make targets"
    assert named - targets == set()


def test_demo_args_are_the_demos_flags():
    demo = (docs.ROOT / "deploy" / "local" / "demo.py").read_text()
    accepted = set(re.findall(r"add_argument\(\s*\"(--[a-z][a-z0-9-]*)\"", demo))
    shown = {
        flag
        for span in spans("README.md")
        if "DEMO_ARGS=" in span
        for flag in FLAG.findall(span.split("DEMO_ARGS=", 1)[1])
    }
    assert shown, "README.md shows DEMO_ARGS"
    assert shown - accepted == set()
