"""`moments run` puts its interpreter's directory first on PATH before the local JVM starts.

PEMJA, embedded in the MiniCluster JVM, finds its Python through `python` on PATH; a venv's
console script started from a plain shell must still hand it the venv. The integration test
`tests/integration/test_docs_readme.py` runs the real command with such a PATH.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from jobs.detection.environment import venv_first_on_path as _venv_first_on_path

BIN = str(Path(sys.executable).parent)


def test_a_plain_path_gets_the_interpreters_directory_first():
    environ = {"PATH": "/usr/bin:/bin", "HOME": "/root"}
    _venv_first_on_path(environ)
    assert environ["PATH"].split(os.pathsep) == [BIN, "/usr/bin", "/bin"]
    assert environ["HOME"] == "/root"


def test_a_path_that_starts_with_it_is_left_alone():
    environ = {"PATH": os.pathsep.join([BIN, "/usr/bin"])}
    _venv_first_on_path(environ)
    assert environ["PATH"] == os.pathsep.join([BIN, "/usr/bin"])


def test_it_goes_first_even_when_it_is_further_down():
    # A base interpreter's directory before the venv's would still win the PATH lookup.
    environ = {"PATH": os.pathsep.join(["/usr/bin", BIN])}
    _venv_first_on_path(environ)
    assert environ["PATH"].split(os.pathsep)[0] == BIN


def test_an_empty_or_missing_path_becomes_just_the_directory():
    empty, missing = {"PATH": ""}, {}
    _venv_first_on_path(empty)
    _venv_first_on_path(missing)
    assert empty["PATH"] == BIN
    assert missing["PATH"] == BIN


def test_the_process_environment_is_the_default(monkeypatch):
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    _venv_first_on_path()
    assert os.environ["PATH"].split(os.pathsep)[0] == BIN
