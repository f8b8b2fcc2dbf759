"""The one secret reader: `NAME` or `NAME_FILE`, never both, errors that name the variable only."""

from __future__ import annotations

import pytest

from schemas.errors import UserError
from udfs.secrets import SecretError, read_secret


def test_a_variable_or_a_file(tmp_path):
    (tmp_path / "key").write_text("  from-file\n")
    assert read_secret({"KEY": " value "}, "KEY").get_secret_value() == "value"
    assert read_secret({"KEY_FILE": str(tmp_path / "key")}, "KEY").get_secret_value() == "from-file"
    assert read_secret({}, "KEY") is None
    assert read_secret({"KEY": "  "}, "KEY") is None


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"KEY": "s3cret", "KEY_FILE": "/x"}, "KEY and KEY_FILE are both set"),
        ({"KEY": "", "KEY_FILE": "/x"}, "KEY and KEY_FILE are both set"),
        ({"KEY_FILE": "/nonexistent/key"}, "KEY_FILE: cannot read /nonexistent/key"),
    ],
)
def test_mistakes_name_the_variable_never_the_value(environ, message):
    with pytest.raises(SecretError, match=message) as raised:
        read_secret(environ, "KEY")
    assert "s3cret" not in str(raised.value)
    assert isinstance(raised.value, UserError)


def test_an_empty_file_is_an_error(tmp_path):
    (tmp_path / "key").write_text("\n")
    with pytest.raises(SecretError, match="KEY_FILE: .* is empty"):
        read_secret({"KEY_FILE": str(tmp_path / "key")}, "KEY")
