"""Every user mistake, whatever layer raises it, is one line `moments <command>: ...` and exit 2."""

from __future__ import annotations

from jobs import cli
from jobs.cli import UsageError
from jobs.options import OptionsError as ConfigError
from schemas.errors import UserError
from schemas.rules import RuleFileError
from udfs.crm import CrmConfigError
from udfs.delivery.settings import SettingsError


def test_every_user_error_type_shares_one_base():
    for error in (UsageError, ConfigError, SettingsError, CrmConfigError, RuleFileError):
        assert issubclass(error, UserError)


def test_a_secret_set_twice_is_one_line_and_exit_2(monkeypatch, capsys):
    monkeypatch.setenv("BRAZE_API_KEY", "s3cret")
    monkeypatch.setenv("BRAZE_API_KEY_FILE", "/nonexistent")
    assert cli.main(["deliver", "--actions", "x.jsonl"]) == 2
    err = capsys.readouterr().err
    assert (
        err
        == "moments deliver: BRAZE_API_KEY and BRAZE_API_KEY_FILE are both set; set one of them\n"
    )
