"""Secrets from the environment: a variable `NAME` or a file named by `NAME_FILE` (a mounted docker
or Kubernetes secret), never from flags. The one reader for every job, so both follow one rule.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from pydantic import SecretStr

from schemas.errors import UserError


class SecretError(UserError, ValueError):
    """A secret set twice or unreadable; the message names the variable and path, not the value."""


def read_secret(environ: Mapping[str, str], name: str) -> SecretStr | None:
    """`NAME`, or the content of the file `NAME_FILE` names (surrounding whitespace stripped, as
    secrets are mounted with a trailing newline); None when neither is set or `NAME` is blank.
    Both set, even to an empty value, is an error: which one wins would be a guess."""
    value, path = environ.get(name), environ.get(f"{name}_FILE")
    if value is not None and path is not None:
        raise SecretError(f"{name} and {name}_FILE are both set; set one of them")
    if path is None:
        return SecretStr(value.strip()) if value and value.strip() else None
    try:
        content = Path(path).read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise SecretError(f"{name}_FILE: cannot read {path}: {exc.strerror}") from None
    if not content:
        raise SecretError(f"{name}_FILE: {path} is empty")
    return SecretStr(content)
