"""The shape of jobs/ (issue 14): files and functions short enough to read top-down, the engine's
Flink operator thin over udfs/host.py, and no import cycles between the project's modules."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
PACKAGES = ("jobs", "udfs", "schemas")
MAX_FILE_LINES = 300
MAX_FUNCTION_LINES = 60


def _sources(*packages: str):
    for package in packages:
        for path in sorted((ROOT / package).rglob("*.py")):
            yield path, ast.parse(path.read_text(), str(path))


def _length(node: ast.AST) -> int:
    return node.end_lineno - node.lineno + 1


def test_no_file_in_jobs_is_over_300_lines():
    long = {
        str(path.relative_to(ROOT)): lines
        for path in (ROOT / "jobs").rglob("*.py")
        if (lines := len(path.read_text().splitlines())) > MAX_FILE_LINES
    }
    assert not long


def test_no_function_in_jobs_is_over_60_lines():
    long = {
        f"{path.relative_to(ROOT)}:{node.lineno} {node.name}": _length(node)
        for path, tree in _sources("jobs")
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and _length(node) > MAX_FUNCTION_LINES
    }
    assert not long


def test_the_engine_operator_is_a_thin_adapter():
    tree = ast.parse((ROOT / "jobs" / "operators" / "detect.py").read_text())
    (detect,) = [n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "DetectMoments"]
    assert _length(detect) < 120


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(name: str, path: Path, tree: ast.Module, modules: set[str]) -> set[str]:
    """The project modules `name` imports (at any depth: lazy imports close cycles too)."""
    found = set()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{anchor}.{base}" if base else anchor
            targets = [base, *(f"{base}.{alias.name}" for alias in node.names)]
        else:
            continue
        found.update(t for t in targets if t in modules and t != name)
    return found


def test_no_import_cycles():
    sources = {_module_name(path): (path, tree) for path, tree in _sources(*PACKAGES)}
    modules = set(sources)
    graph = {name: _imports(name, *sources[name], modules) for name in modules}
    # A package's __init__ re-exporting its modules is not a cycle with them.
    for name in graph:
        graph[name] = {t for t in graph[name] if not name.startswith(t + ".")}
    cycles = []
    state: dict[str, int] = {}

    def visit(name: str, stack: list[str]) -> None:
        state[name] = 1
        for target in sorted(graph[name]):
            if state.get(target) == 1:
                cycles.append(" -> ".join([*stack[stack.index(target) :], target]))
            elif target not in state:
                visit(target, [*stack, target])
        state[name] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
    assert not cycles
