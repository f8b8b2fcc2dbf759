from __future__ import annotations

import pytest

from udfs.crm import CachedProfileLookup, CrmConfigError, CrmSettings, build_lookup, from_env
from udfs.crm.http import HttpProfileLookup
from udfs.crm.postgres import PostgresProfileLookup

DSN = "postgresql://moments:s3cret-pw@db.internal:5432/crm"
TOKEN = "tok-abc123"


def test_nothing_set_means_no_crm():
    settings = from_env({})
    assert settings.backend == "none"
    assert build_lookup(settings) is None
    assert settings.describe() == "CRM: none (enrichment skipped)"


def test_defaults():
    settings = from_env({"CRM_DSN": DSN})
    assert settings.backend == "postgres"
    assert (settings.timeout_ms, settings.retries) == (200, 2)
    assert (settings.cache_ttl_s, settings.cache_size, settings.pool_size) == (300, 100_000, 4)
    assert settings.table == "crm_profiles"
    assert settings.timeout_s == 0.2


def test_numbers_come_from_the_environment():
    settings = from_env(
        {
            "CRM_DSN": DSN,
            "CRM_TIMEOUT_MS": "50",
            "CRM_RETRIES": "0",
            "CRM_CACHE_TTL_S": "1.5",
            "CRM_CACHE_SIZE": "10",
            "CRM_POOL_SIZE": "8",
            "CRM_TABLE": "crm.profiles",
        }
    )
    assert (settings.timeout_ms, settings.retries, settings.cache_ttl_s) == (50, 0, 1.5)
    assert (settings.cache_size, settings.pool_size, settings.table) == (10, 8, "crm.profiles")


def test_the_backend_is_inferred_postgres_first():
    assert from_env({"CRM_HTTP_URL": "https://crm.example", "CRM_HTTP_TOKEN": TOKEN}).backend == (
        "http"
    )
    both = {"CRM_DSN": DSN, "CRM_HTTP_URL": "https://crm.example", "CRM_HTTP_TOKEN": TOKEN}
    assert from_env(both).backend == "postgres"


def test_an_explicit_backend_wins_over_inference():
    env = {"CRM_DSN": DSN, "CRM_HTTP_URL": "https://crm.example", "CRM_HTTP_TOKEN": TOKEN}
    assert from_env({**env, "CRM_BACKEND": "http"}).backend == "http"
    assert from_env({**env, "CRM_BACKEND": "none"}).backend == "none"
    assert from_env({**env, "CRM_BACKEND": "HTTP"}).backend == "http"


def test_secrets_are_read_from_files(tmp_path):
    (tmp_path / "dsn").write_text(DSN + "\n")
    (tmp_path / "token").write_text(TOKEN + "\n")

    settings = from_env(
        {
            "CRM_DSN_FILE": str(tmp_path / "dsn"),
            "CRM_HTTP_URL": "https://crm.example/api",
            "CRM_HTTP_TOKEN_FILE": str(tmp_path / "token"),
        }
    )

    assert settings.backend == "postgres"
    assert settings.dsn.get_secret_value() == DSN
    assert settings.http_token.get_secret_value() == TOKEN


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"CRM_BACKEND": "postgres"}, "needs CRM_DSN or CRM_DSN_FILE"),
        ({"CRM_BACKEND": "http", "CRM_HTTP_TOKEN": TOKEN}, "needs CRM_HTTP_URL"),
        ({"CRM_HTTP_URL": "https://crm.example"}, "needs CRM_HTTP_TOKEN"),
        ({"CRM_HTTP_URL": "ftp://crm.example", "CRM_HTTP_TOKEN": TOKEN}, "CRM_HTTP_URL must"),
        ({"CRM_BACKEND": "mysql"}, "CRM_BACKEND: Input should be"),
        ({"CRM_DSN": DSN, "CRM_TIMEOUT_MS": "soon"}, "CRM_TIMEOUT_MS: Input should be"),
        ({"CRM_DSN": DSN, "CRM_TIMEOUT_MS": "0"}, "CRM_TIMEOUT_MS: Input should be greater"),
        ({"CRM_DSN": DSN, "CRM_RETRIES": "-1"}, "CRM_RETRIES"),
        ({"CRM_DSN": DSN, "CRM_TABLE": "profiles; drop table x"}, "CRM_TABLE"),
        ({"CRM_DSN": DSN, "CRM_DSN_FILE": "/x"}, "CRM_DSN and CRM_DSN_FILE are both set"),
        ({"CRM_DSN_FILE": "/nonexistent/dsn"}, "CRM_DSN_FILE: cannot read /nonexistent/dsn"),
        (
            {"CRM_HTTP_URL": "https://user:pw@crm.example", "CRM_HTTP_TOKEN": TOKEN},
            "must not carry credentials",
        ),
    ],
)
def test_mistakes_are_named(env, expected):
    with pytest.raises(CrmConfigError, match=expected.replace("(", r"\(")):
        from_env(env)


def test_an_empty_secret_file_is_an_error(tmp_path):
    (tmp_path / "token").write_text("\n")
    with pytest.raises(CrmConfigError, match="CRM_HTTP_TOKEN_FILE: .* is empty"):
        from_env(
            {"CRM_HTTP_URL": "https://crm.example", "CRM_HTTP_TOKEN_FILE": str(tmp_path / "token")}
        )


def test_a_bad_dsn_is_refused_without_echoing_it():
    with pytest.raises(CrmConfigError) as raised:
        from_env({"CRM_DSN": "host=db password=s3cret-pw bogus"})
    assert "s3cret-pw" not in str(raised.value)
    assert "CRM_DSN is not a valid" in str(raised.value)


def test_secrets_never_show_in_repr_str_or_describe():
    settings = from_env(
        {"CRM_DSN": DSN, "CRM_HTTP_URL": "https://crm.example:8443/api", "CRM_HTTP_TOKEN": TOKEN}
    )
    for text in (repr(settings), str(settings), settings.describe()):
        assert "s3cret-pw" not in text and TOKEN not in text
    assert settings.describe().startswith("CRM: postgres postgresql://moments@db.internal:5432/crm")
    http = settings.model_copy(update={"backend": "http"})
    assert http.describe().startswith("CRM: http https://crm.example:8443 ")


def test_settings_pickle_for_the_flink_workers():
    import pickle

    settings = from_env({"CRM_DSN": DSN})
    assert pickle.loads(pickle.dumps(settings)) == settings


def test_build_lookup_picks_the_backend_behind_the_cache():
    postgres = build_lookup(from_env({"CRM_DSN": DSN}))
    assert isinstance(postgres, CachedProfileLookup)
    assert isinstance(postgres.inner, PostgresProfileLookup)
    assert "s3cret-pw" not in repr(postgres)

    http = build_lookup(from_env({"CRM_HTTP_URL": "https://crm.example", "CRM_HTTP_TOKEN": TOKEN}))
    assert isinstance(http.inner, HttpProfileLookup)
    assert TOKEN not in repr(http)

    uncached = build_lookup(from_env({"CRM_DSN": DSN, "CRM_CACHE_TTL_S": "0"}))
    assert isinstance(uncached, PostgresProfileLookup)
    for lookup in (postgres, http, uncached):
        lookup.close()


def test_settings_can_be_built_directly_too():
    settings = CrmSettings(backend="postgres", dsn=DSN)
    assert settings.dsn.get_secret_value() == DSN
