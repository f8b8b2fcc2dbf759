"""CRM configuration, read from the environment in this one place, and the lookup it describes.

    settings = from_env(os.environ)        # validated at start-up; CrmConfigError on a mistake
    lookup = build_lookup(settings)        # None when no CRM is configured (enrichment: skipped)

`CrmSettings` pickles (PyFlink ships it to the workers); build the lookup in the operator's
`open()`, since pools and threads do not pickle.

Environment: CRM_BACKEND (postgres | http | file | none; default postgres when CRM_DSN or
CRM_DSN_FILE is set, else http when CRM_HTTP_URL is set, else file when CRM_PROFILES_FILE is set,
else none), CRM_DSN or CRM_DSN_FILE, CRM_TABLE, CRM_PROFILES_FILE (a JSONL snapshot, one
`{"user_id": ..., <fields>}` per line, read once into memory: udfs/crm/file.py), CRM_HTTP_URL,
CRM_HTTP_TOKEN or CRM_HTTP_TOKEN_FILE, CRM_TIMEOUT_MS (200), CRM_RETRIES (2), CRM_CACHE_TTL_S
(300), CRM_CACHE_SIZE (100000), CRM_POOL_SIZE (4), CRM_PREFETCH (events: the inline layout looks a
user up at each event a rule reads; actions: only when an action fires), CRM_BATCH_LINGER_MS (20:
how long a lookup waits for others to share its query; not for http). A variable and its _FILE
twin together are an error: which one wins would be a guess.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from schemas.errors import UserError
from udfs.crm.base import ProfileLookup
from udfs.secrets import SecretError, read_secret

Backend = Literal["postgres", "http", "file", "none"]


class CrmConfigError(UserError, ValueError):
    """A CRM setting the user must fix. The message names the variable, never a secret's value."""


class CrmSettings(BaseModel):
    """Which CRM to ask and how patiently. Secrets are `SecretStr`: repr shows `**********`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    backend: Backend = "none"
    dsn: SecretStr | None = None
    table: str = Field("crm_profiles", pattern=r"^[A-Za-z_]\w{0,62}(\.[A-Za-z_]\w{0,62})?$")
    http_url: str | None = None
    http_token: SecretStr | None = None
    profiles_file: str | None = None
    timeout_ms: int = Field(200, ge=1, le=60_000)
    retries: int = Field(2, ge=0, le=10)
    cache_ttl_s: float = Field(300.0, ge=0)
    cache_size: int = Field(100_000, ge=0)
    pool_size: int = Field(4, ge=1, le=100)
    # inline layout: look a user up at each event a rule reads (events) or when an action fires
    prefetch: Literal["events", "actions"] = "events"
    # inline layout, batched backends: how long a lookup waits for others to share its query
    batch_linger_ms: int = Field(20, ge=0, le=1_000)

    @model_validator(mode="after")
    def _backend_has_what_it_needs(self) -> CrmSettings:
        if self.backend == "postgres":
            if self.dsn is None or not self.dsn.get_secret_value().strip():
                raise ValueError("CRM_BACKEND=postgres needs CRM_DSN or CRM_DSN_FILE")
            _check_dsn(self.dsn.get_secret_value())
        if self.backend == "http":
            if not self.http_url:
                raise ValueError("CRM_BACKEND=http needs CRM_HTTP_URL")
            parts = urlsplit(self.http_url)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ValueError("CRM_HTTP_URL must look like https://host[:port][/prefix]")
            if parts.username or parts.password:
                raise ValueError("CRM_HTTP_URL must not carry credentials; use CRM_HTTP_TOKEN")
            if self.http_token is None or not self.http_token.get_secret_value():
                raise ValueError("CRM_BACKEND=http needs CRM_HTTP_TOKEN or CRM_HTTP_TOKEN_FILE")
        if self.backend == "file" and not self.profiles_file:
            raise ValueError("CRM_BACKEND=file needs CRM_PROFILES_FILE")
        return self

    @field_validator("profiles_file")
    @classmethod
    def _existing_file(cls, value: str | None) -> str | None:
        # Absolute: the workers that read it may run in another directory.
        if value is None:
            return None
        if not Path(value).is_file():
            raise ValueError(f"{value}: no such file")
        from udfs.crm.file import load_profiles

        # Read at start-up (once per process): a bad line is one error before any job starts.
        load_profiles(value)
        return str(Path(value).resolve())

    @property
    def timeout_s(self) -> float:
        return self.timeout_ms / 1000.0

    def describe(self) -> str:
        """One line for a start-up log: where the CRM is, without passwords or tokens."""
        if self.backend == "postgres":
            where = _dsn_location(self.dsn.get_secret_value()) + f" table={self.table}"
        elif self.backend == "http":
            parts = urlsplit(self.http_url)
            port = f":{parts.port}" if parts.port else ""
            where = f"{parts.scheme}://{parts.hostname}{port}"
        elif self.backend == "file":
            return f"CRM: file {self.profiles_file} (read once into memory)"
        else:
            return "CRM: none (enrichment skipped)"
        return (
            f"CRM: {self.backend} {where} timeout={self.timeout_ms}ms retries={self.retries} "
            f"cache={self.cache_size}x{self.cache_ttl_s:g}s"
        )


def _check_dsn(dsn: str) -> None:
    from psycopg.conninfo import conninfo_to_dict

    try:
        conninfo_to_dict(dsn)
    except Exception:
        # The parser's message may quote the string, password included.
        raise ValueError("CRM_DSN is not a valid libpq connection string or URL") from None


def _dsn_location(dsn: str) -> str:
    from psycopg.conninfo import conninfo_to_dict

    params = conninfo_to_dict(dsn)
    return "postgresql://{user}@{host}:{port}/{dbname}".format(
        user=params.get("user", ""),
        host=params.get("host", ""),
        port=params.get("port", "5432"),
        dbname=params.get("dbname", ""),
    )


_FIELDS_BY_VARIABLE = {
    "CRM_TABLE": "table",
    "CRM_HTTP_URL": "http_url",
    "CRM_PROFILES_FILE": "profiles_file",
    "CRM_TIMEOUT_MS": "timeout_ms",
    "CRM_RETRIES": "retries",
    "CRM_CACHE_TTL_S": "cache_ttl_s",
    "CRM_CACHE_SIZE": "cache_size",
    "CRM_POOL_SIZE": "pool_size",
    "CRM_PREFETCH": "prefetch",
    "CRM_BATCH_LINGER_MS": "batch_linger_ms",
}
_VARIABLES_BY_FIELD = {field: variable for variable, field in _FIELDS_BY_VARIABLE.items()} | {
    "backend": "CRM_BACKEND",
    "dsn": "CRM_DSN",
    "http_token": "CRM_HTTP_TOKEN",
}


def from_env(environ: Mapping[str, str]) -> CrmSettings:
    """Reads and validates the CRM settings; `CrmConfigError` names the variable at fault."""
    values: dict[str, object] = {
        field: environ[variable].strip()
        for variable, field in _FIELDS_BY_VARIABLE.items()
        if environ.get(variable, "").strip()
    }
    try:
        dsn = read_secret(environ, "CRM_DSN")
        token = read_secret(environ, "CRM_HTTP_TOKEN")
    except SecretError as exc:
        raise CrmConfigError(str(exc)) from None
    if dsn is not None:
        values["dsn"] = dsn
    if token is not None:
        values["http_token"] = token
    backend = environ.get("CRM_BACKEND", "").strip().lower()
    if not backend:
        backend = (
            "postgres"
            if dsn is not None
            else "http"
            if values.get("http_url")
            else "file"
            if values.get("profiles_file")
            else "none"
        )
    values["backend"] = backend
    try:
        return CrmSettings.model_validate(values)
    except ValidationError as exc:
        # Rebuilt from location and message only: pydantic's text quotes the input, which may be
        # a secret.
        problems = []
        for error in exc.errors(include_input=False, include_url=False):
            field = str(error["loc"][0]) if error["loc"] else ""
            message = error["msg"].removeprefix("Value error, ")
            problems.append(f"{_VARIABLES_BY_FIELD[field]}: {message}" if field else message)
        raise CrmConfigError("; ".join(problems)) from None


def with_profiles_file(environ: Mapping[str, str], path: str | Path) -> dict[str, str]:
    """`environ` with the snapshot at `path` as the CRM (`moments run --profiles`); an error when
    the file is missing or CRM_BACKEND names another backend (which one was meant is a guess)."""
    if not Path(path).is_file():
        raise CrmConfigError(f"--profiles: {path}: no such file")
    backend = environ.get("CRM_BACKEND", "").strip().lower()
    if backend not in ("", "file"):
        raise CrmConfigError(
            f"--profiles makes the snapshot file the CRM, but CRM_BACKEND={backend} is set: "
            "drop one of them"
        )
    return {**environ, "CRM_BACKEND": "file", "CRM_PROFILES_FILE": str(path)}


def build_prefetcher(settings: CrmSettings):
    """The configured backend behind a `ProfilePrefetcher` (background batched lookups and the
    TTL cache), or None for `backend: none`. PostgreSQL answers a batch in one query and the file
    from memory, so two workers suffice; the HTTP API is asked one user at a time, by `pool_size`
    workers."""
    from udfs.crm.prefetch import ProfilePrefetcher

    backend = _backend(settings)
    if backend is None:
        return None
    http = settings.backend == "http"
    workers = settings.pool_size if http else min(2, settings.pool_size)
    return ProfilePrefetcher(
        backend,
        timeout_s=settings.timeout_s,
        ttl_s=settings.cache_ttl_s,
        max_entries=settings.cache_size,
        workers=workers,
        # One user per request over HTTP: a worker would look a lingered batch up in turn.
        linger_s=0.0 if http else settings.batch_linger_ms / 1000,
    )


def build_lookup(settings: CrmSettings) -> ProfileLookup | None:
    """The configured backend behind the TTL cache (when `cache_ttl_s` and `cache_size` are both
    non-zero; the file backend, already in memory, is not cached), or None for `backend: none`."""
    from udfs.crm.cache import CachedProfileLookup

    lookup = _backend(settings)
    cached = settings.backend != "file" and settings.cache_ttl_s > 0 and settings.cache_size > 0
    if lookup is not None and cached:
        lookup = CachedProfileLookup(
            lookup, ttl_s=settings.cache_ttl_s, max_entries=settings.cache_size
        )
    return lookup


def _backend(settings: CrmSettings) -> ProfileLookup | None:
    lookup: ProfileLookup
    if settings.backend == "postgres":
        from udfs.crm.postgres import PostgresProfileLookup

        lookup = PostgresProfileLookup(
            settings.dsn.get_secret_value(),
            table=settings.table,
            timeout_s=settings.timeout_s,
            retries=settings.retries,
            pool_size=settings.pool_size,
        )
    elif settings.backend == "http":
        from udfs.crm.http import HttpProfileLookup

        lookup = HttpProfileLookup(
            settings.http_url,
            settings.http_token.get_secret_value(),
            timeout_s=settings.timeout_s,
            retries=settings.retries,
        )
    elif settings.backend == "file":
        from udfs.crm.file import load_profiles

        lookup = load_profiles(settings.profiles_file)
    else:
        return None
    return lookup
