"""Scrub contact details out of text before it reaches a log line."""

from __future__ import annotations

import re

_EMAIL = re.compile(r"[A-Za-z0-9._%+\-]+@[A-Za-z0-9.\-]+\.[A-Za-z]{2,}")
# Phone-like runs: an optional +, then 7+ digits with common separators.
_PHONE = re.compile(r"\+?\d[\d\s().\-]{6,}\d")


def redact(text: str) -> str:
    """Vendor messages can echo an email or phone number back: never log them."""
    return _PHONE.sub("<phone>", _EMAIL.sub("<email>", text))
