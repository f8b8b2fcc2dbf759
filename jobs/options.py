"""Command-line options declared once, on a pydantic-settings model: each field says its default,
help, flag and environment variable with `option(...)`, and the parser, the environment lookup and
the `--help` text are generated from it.

Values are taken from flags, then the environment, then the defaults (a repeatable flag adds its
items after the variable's); `load` validates them at start-up into one `OptionsError` line naming
the flag or variable at fault.
"""

from __future__ import annotations

import argparse
import contextvars
import functools
import os
import textwrap
import typing
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Literal, TypeVar

from pydantic import BeforeValidator, Field, ValidationError
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from schemas.durations import parse_duration_ms
from schemas.errors import UserError
from udfs.secrets import read_secret

_DERIVED = "derived"


class OptionsError(UserError, ValueError):
    """A flag or variable with a value the job cannot use; the message names it."""


@dataclass(frozen=True)
class Spec:
    """How one field is set from outside: its flag (None: environment only), variable and help."""

    flag: str | None
    env: str | None
    metavar: str | None
    group: str | None
    secret: bool
    repeatable: bool


def option(
    default: Any,
    help: str,
    *,
    flag: str | None = _DERIVED,
    env: str | None = None,
    metavar: str | None = None,
    group: str | None = None,
    secret: bool = False,
    repeatable: bool = False,
    **constraints: Any,
) -> Any:
    """A field of an `Options` model. The flag defaults to `--field-name`; `flag=None` makes the
    option environment-only (secrets must be: `secret=True` also reads `ENV_FILE`), or with no
    `env` either, a value the job sets itself (`load(..., name=value)`). `default=...`: required.
    `constraints` are pydantic's (`gt`, `ge`, ...)."""
    if secret and flag not in (None, _DERIVED):
        raise TypeError("a secret has no flag: it comes from the environment only")
    extra = {
        "flag": None if secret else flag,
        "env": env,
        "metavar": metavar,
        "group": group,
        "secret": secret,
        "repeatable": repeatable,
    }
    return Field(default, description=help, json_schema_extra={"option": extra}, **constraints)


def spec_of(name: str, field: FieldInfo) -> Spec:
    extra = field.json_schema_extra
    if not isinstance(extra, dict) or "option" not in extra:
        raise TypeError(f"{name}: declare every Options field with option(...)")
    values = dict(extra["option"])  # type: ignore[arg-type]
    if values["flag"] == _DERIVED:
        values["flag"] = "--" + name.replace("_", "-")
    return Spec(**values)


def specs(model: type[Options]) -> Iterator[tuple[str, FieldInfo, Spec]]:
    for name, field in model.model_fields.items():
        yield name, field, spec_of(name, field)


def _seconds(value: Any) -> Any:
    return parse_duration_ms(value) / 1000 if isinstance(value, str) else value


def duration_ms(value: Any, *, off: bool = False) -> Any:
    """A duration given as text (`150ms`, `2s`, or `0`) in milliseconds; with `off`, the text
    `off` is None (no bound). Anything not text passes to the field's own validation."""
    if not isinstance(value, str):
        return value
    text = value.strip()
    if off and text.lower() == "off":
        return None
    if text in ("0", "0ms", "0s"):
        return 0
    return parse_duration_ms(text)


def _comma_list(value: Any) -> Any:
    if isinstance(value, str):
        return tuple(item.strip() for item in value.split(",") if item.strip())
    return value


Seconds = Annotated[float, BeforeValidator(_seconds)]
"""A duration (`200ms`, `30s`) given as text, held in seconds."""

Millis = Annotated[int, BeforeValidator(duration_ms)]
"""A duration (`200ms`, `30s`, `0`) given as text, held in milliseconds."""

MillisOrOff = Annotated[int | None, BeforeValidator(functools.partial(duration_ms, off=True))]
"""As `Millis`, or `off`: None."""

CommaList = Annotated[tuple[str, ...], BeforeValidator(_comma_list)]
"""`a,b,c` given as text, held as a tuple; `''` is the empty tuple."""


# The environment `load` was given, for the model's own source while `load` validates (else the
# model reads the process environment again, under a mapping `load` filtered).
_LOADING_ENVIRON = contextvars.ContextVar[Mapping[str, str] | None]("environ", default=None)


class EnvironSource(PydanticBaseSettingsSource):
    """The variables the fields declare (only those), from `environ` or the process environment.
    A blank variable counts as unset; a secret is read by `read_secret` (`NAME` or `NAME_FILE`)."""

    def __init__(self, settings_cls: type[BaseSettings], environ: Mapping[str, str] | None = None):
        super().__init__(settings_cls)
        environ = _LOADING_ENVIRON.get() if environ is None else environ
        self._environ = os.environ if environ is None else environ

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        spec = spec_of(field_name, field)
        if spec.env is None:
            return None, field_name, False
        if spec.secret:
            return read_secret(self._environ, spec.env), field_name, False
        text = self._environ.get(spec.env, "").strip()
        if not text:
            return None, field_name, False
        if spec.repeatable:
            return [item.strip() for item in text.split(",") if item.strip()], field_name, False
        return text, field_name, False

    def __call__(self) -> dict[str, Any]:
        values = {}
        for name, field in self.settings_cls.model_fields.items():
            value, _, _ = self.get_field_value(field, name)
            if value is not None:
                values[name] = value
        return values


class Options(BaseSettings):
    """Base of a job's options: frozen, unknown names refused, and `Model()` alone reads the
    declared variables over the defaults (no `.env` file, no other variables)."""

    model_config = SettingsConfigDict(frozen=True, extra="forbid")

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, EnvironSource(settings_cls))


def add_arguments(parser: argparse.ArgumentParser, model: type[Options]) -> None:
    """One argument per field with a flag, in declaration order, in its group. A field with a
    variable defaults to None in the parser, so `load` can tell "not given" from "given"; a bool
    field is a switch (`--no-x` for one that defaults to on)."""
    groups: dict[str, argparse._ArgumentGroup] = {}
    for name, field, spec in specs(model):
        if spec.flag is None:
            continue
        if spec.group is None:
            target: Any = parser
        elif spec.group in groups:
            target = groups[spec.group]
        else:
            target = groups[spec.group] = parser.add_argument_group(spec.group)
        kwargs: dict[str, Any] = {"dest": name, "help": field.description}
        choices = _literal_choices(field.annotation)
        if choices:
            kwargs["choices"] = choices
        if spec.metavar:
            kwargs["metavar"] = spec.metavar
        if spec.repeatable:
            kwargs.update(action="append", default=None)
        elif field.annotation is bool:
            # A switch: `--x` sets True, `--no-x` False; not given, the model's default holds.
            const = not spec.flag.startswith("--no-")
            kwargs.update(action="store_const", const=const, default=None)
        elif field.is_required():
            kwargs.update(required=True, default=None)
        else:
            kwargs["default"] = None if spec.env else field.default
        target.add_argument(spec.flag, **kwargs)


def _literal_choices(annotation: Any) -> tuple[Any, ...] | None:
    if typing.get_origin(annotation) is Literal:
        return typing.get_args(annotation)
    return None


M = TypeVar("M", bound=Options)


def load(
    model: type[M],
    args: argparse.Namespace,
    environ: Mapping[str, str] | None = None,
    **values: Any,
) -> M:
    """The validated options: flags given, then `environ` (default: the process environment), then
    the defaults; `values` sets fields that have neither flag nor variable. Any problem is one
    `OptionsError` naming the flag or variable."""
    from_env = EnvironSource(model, environ)()
    from_flags = {}
    for name, _field, spec in specs(model):
        value = getattr(args, name, None) if spec.flag else None
        if value is None:
            continue
        if spec.repeatable:
            value = [*from_env.get(name, []), *value]
        from_flags[name] = value
    token = _LOADING_ENVIRON.set(os.environ if environ is None else environ)
    try:
        return model.model_validate({**from_env, **from_flags, **values})
    except ValidationError as error:
        raise OptionsError(_one_line(model, error, from_flags)) from None
    finally:
        _LOADING_ENVIRON.reset(token)


def _one_line(model: type[Options], error: ValidationError, from_flags: dict[str, Any]) -> str:
    problems = []
    for item in error.errors(include_input=False, include_url=False):
        message = item["msg"].removeprefix("Value error, ")
        name = str(item["loc"][0]) if item["loc"] else ""
        if name in model.model_fields:
            spec = spec_of(name, model.model_fields[name])
            label = spec.flag if name in from_flags or spec.env is None else spec.env
            message = f"{label or name}: {message}"
        if message not in problems:
            problems.append(message)
    return "; ".join(problems)


def environment_help(model: type[Options], width: int = 100) -> str:
    """The `environment:` section of `--help`: each declared variable and what it sets."""
    lines = ["environment:"]
    for _name, field, spec in specs(model):
        if spec.env is None:
            continue
        text = field.description or ""
        if spec.flag and spec.repeatable:
            text = f"comma-separated, as {spec.flag}; the flags' items come after these"
        elif spec.flag:
            text = f"as {spec.flag}; the flag wins"
        if spec.secret:
            text += f"; or {spec.env}_FILE, a file holding it (a mounted secret), not both"
        lines += textwrap.wrap(
            text,
            width=width,
            initial_indent=f"  {spec.env:<24}  ",
            subsequent_indent=" " * 28,
            break_on_hyphens=False,
        )
    return "\n".join(lines)


__all__ = ["CommaList", "Millis", "MillisOrOff", "EnvironSource", "Options", "OptionsError"]
__all__ += ["Seconds", "add_arguments", "duration_ms", "environment_help", "load", "option"]
