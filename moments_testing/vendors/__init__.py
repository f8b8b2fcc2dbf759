"""Strict local stand-ins for the Braze and Iterable REST APIs (loopback only), for tests and the
delivery benchmark."""

from moments_testing.vendors.base import Faults
from moments_testing.vendors.braze import BrazeServer
from moments_testing.vendors.iterable import IterableServer

__all__ = ["BrazeServer", "Faults", "IterableServer"]
