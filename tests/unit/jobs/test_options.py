"""Options declared once: generated flags, flags over environment over defaults, one-line errors."""

from __future__ import annotations

import argparse

import pytest
from pydantic import SecretStr, model_validator

from jobs.options import (
    CommaList,
    Options,
    OptionsError,
    Seconds,
    add_arguments,
    environment_help,
    load,
    option,
)


class Example(Options):
    servers: str = option("local:1", "servers", env="EXAMPLE_SERVERS", group="source")
    batch_size: int = option(500, "batch (default %(default)s)", gt=0)
    linger_s: Seconds = option(0.2, "linger", flag="--linger", metavar="DURATION")
    mode: str = option("a", "mode")
    retries: int = option(2, "retries", env="EXAMPLE_RETRIES", ge=0)
    fields: CommaList = option(("x", "y"), "fields")
    limits: tuple[str, ...] = option((), "limits", env="EXAMPLE_LIMITS", repeatable=True)
    token: SecretStr | None = option(None, "the token", env="EXAMPLE_TOKEN", secret=True)

    @model_validator(mode="after")
    def _not_both(self):
        if self.mode == "b" and self.token is None:
            raise ValueError("mode b needs EXAMPLE_TOKEN")
        return self


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_arguments(parser, Example)
    return parser.parse_args(argv)


def test_defaults_environment_and_flags_in_that_order():
    assert load(Example, parse(), {}).servers == "local:1"
    assert load(Example, parse(), {"EXAMPLE_SERVERS": "env:2"}).servers == "env:2"
    given = load(Example, parse("--servers", "flag:3"), {"EXAMPLE_SERVERS": "env:2"})
    assert given.servers == "flag:3"
    assert load(Example, parse(), {"EXAMPLE_SERVERS": "  "}).servers == "local:1"


def test_the_parser_leaves_a_variable_backed_option_unset():
    args = parse()
    assert args.servers is None and args.batch_size == 500 and args.linger_s == 0.2


def test_text_is_converted_by_the_model():
    options = load(Example, parse("--linger", "1500ms", "--fields", "a, b,", "--batch-size", "7"))
    assert (options.linger_s, options.fields, options.batch_size) == (1.5, ("a", "b"), 7)


def test_a_repeatable_flag_adds_its_items_after_the_variables():
    options = load(Example, parse("--limits", "b=2"), {"EXAMPLE_LIMITS": "a=1, b=1"})
    assert options.limits == ("a=1", "b=1", "b=2")


def test_secrets_come_from_the_environment_or_a_file_never_a_flag(tmp_path):
    with pytest.raises(SystemExit):
        parse("--token", "x")
    (tmp_path / "token").write_text("s3cret\n")
    options = load(Example, parse(), {"EXAMPLE_TOKEN_FILE": str(tmp_path / "token")})
    assert options.token.get_secret_value() == "s3cret"
    assert "s3cret" not in repr(options)


def test_mistakes_are_one_line_naming_the_flag_or_the_variable():
    with pytest.raises(OptionsError, match=r"^--batch-size: Input should be greater than 0$"):
        load(Example, parse("--batch-size", "0"), {})
    with pytest.raises(OptionsError, match=r"^EXAMPLE_RETRIES: Input should be greater"):
        load(Example, parse(), {"EXAMPLE_RETRIES": "-1"})
    with pytest.raises(OptionsError, match=r"^--retries: Input should be greater"):
        load(Example, parse("--retries", "-1"), {"EXAMPLE_RETRIES": "1"})
    with pytest.raises(OptionsError, match=r"^--linger: bad duration"):
        load(Example, parse("--linger", "soon"), {})
    with pytest.raises(OptionsError, match=r"^mode b needs EXAMPLE_TOKEN$"):
        load(Example, parse("--mode", "b"), {})


def test_the_environment_section_of_help_lists_every_variable():
    text = environment_help(Example)
    assert "EXAMPLE_SERVERS" in text and "--servers; the flag wins" in text
    assert "EXAMPLE_TOKEN_FILE" in text and "EXAMPLE_LIMITS" in text
