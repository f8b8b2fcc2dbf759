"""Strict local stand-ins for the Braze and Iterable REST APIs (loopback only), for tests and the
delivery benchmark."""

from tests.vendor_servers.base import Faults
from tests.vendor_servers.braze import BrazeServer
from tests.vendor_servers.iterable import IterableServer

__all__ = ["BrazeServer", "Faults", "IterableServer"]
