"""Every shell block of the checked Markdown is either run by a test or skipped for a stated reason.

A test asks for a block with `block("<path>", "<NAME>")` (`moments_testing.docs`; string literals
or module-level string constants). These tests find the calls by parsing every Python file under
tests/, so a named block nobody runs, or a call naming a block that is gone, fails here.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from moments_testing import docs

TESTS = Path(__file__).resolve().parents[2]
SHELL = [block for path in docs.CHECKED for block in docs.shell_blocks(path)]


def block_calls() -> tuple[set[tuple[str, str]], list[str]]:
    """(path, name) of every `block(...)` / `docs.block(...)` call under tests/, and the places of
    calls whose arguments are neither string literals nor module-level string constants."""
    found, unresolved = set(), []
    for source in sorted(TESTS.rglob("*.py")):
        tree = ast.parse(source.read_text(), str(source))
        constants = {
            node.targets[0].id: node.value.value
            for node in tree.body
            if isinstance(node, ast.Assign)
            and len(node.targets) == 1
            and isinstance(node.targets[0], ast.Name)
            and isinstance(node.value, ast.Constant)
            and isinstance(node.value.value, str)
        }
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            called = node.func
            name = called.id if isinstance(called, ast.Name) else getattr(called, "attr", None)
            if name != "block":
                continue
            values = [_string(arg, constants) for arg in node.args]
            if len(values) == 2 and None not in values and not node.keywords:
                found.add((values[0], values[1]))
            else:
                unresolved.append(f"{source.relative_to(TESTS.parent)}:{node.lineno}")
    return found, unresolved


def _string(node: ast.expr, constants: dict[str, str]) -> str | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.Name):
        return constants.get(node.id)
    return None


def test_the_checked_documents_have_shell_blocks():
    assert {block.path for block in SHELL} == set(docs.CHECKED)


@pytest.mark.parametrize("shown", SHELL, ids=lambda b: f"{b.path}:{b.line}")
def test_every_shell_block_has_a_marker(shown):
    assert shown.name or shown.skip is not None, (
        f"{shown.path}:{shown.line}: precede the block with `<!-- docs-test: NAME -->` (and run it "
        "in a test) or `<!-- docs-test: skip: WHY -->`"
    )
    if shown.skip is not None:
        assert shown.skip, f"{shown.path}:{shown.line}: `skip:` needs a reason"


def test_block_names_are_unique_per_document():
    named = [(block.path, block.name) for block in SHELL if block.name]
    assert len(named) == len(set(named))


def test_block_calls_name_their_block_literally():
    _, unresolved = block_calls()
    assert unresolved == [], "block(path, name) needs string literals or module-level constants"


def test_every_named_block_is_run_by_a_test():
    requested, _ = block_calls()
    named = {(block.path, block.name) for block in SHELL if block.name}
    assert named - requested == set(), "named blocks no test asks for with block(path, name)"


def test_every_requested_block_exists():
    named = {(block.path, block.name) for block in SHELL if block.name}
    requested, _ = block_calls()
    assert requested - named == set(), "tests ask for blocks the documents do not have"
