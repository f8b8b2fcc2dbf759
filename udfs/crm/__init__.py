"""CRM profile lookups for enrichment: one interface (`ProfileLookup`), a PostgreSQL and an HTTP
backend, a TTL + LRU cache, and the settings that pick among them (`from_env`, `build_lookup`).

Importing this package does not import psycopg; the backends load when built.
"""

from udfs.crm.base import LookupResult, LookupStatus, ProfileLookup
from udfs.crm.cache import CachedProfileLookup
from udfs.crm.factory import CrmConfigError, CrmSettings, build_lookup, from_env

__all__ = [
    "CachedProfileLookup",
    "CrmConfigError",
    "CrmSettings",
    "LookupResult",
    "LookupStatus",
    "ProfileLookup",
    "build_lookup",
    "from_env",
]
