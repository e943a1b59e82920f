"""How long Reusely's Retry-After asks the gateway to hold requests."""

from __future__ import annotations

from email.utils import formatdate

import pytest

from gateway.cooldown import DEFAULT_SECONDS, MAX_SECONDS, retry_after_seconds

NOW = 1_800_000_000.0


@pytest.mark.parametrize(("value", "seconds"), [
    (None, DEFAULT_SECONDS), (b"30", 30), (b" 30 ", 30), (b"0", 0), (b"3600", 3600),
    (b"3601", MAX_SECONDS), (b"9" * 400, MAX_SECONDS), (b"-5", DEFAULT_SECONDS),
    (b"1.5", DEFAULT_SECONDS), (b"soon", DEFAULT_SECONDS), (b"", DEFAULT_SECONDS),
    (b"Mon, 99 Foo 2026 99:99:99 GMT", DEFAULT_SECONDS), (b"\xff\xfe", DEFAULT_SECONDS),
    (formatdate(NOW + 90, usegmt=True).encode(), 90),
    (formatdate(NOW + 90.5, usegmt=True).encode(), 90),  # HTTP dates have whole seconds
    (formatdate(NOW - 1, usegmt=True).encode(), 0),
    (formatdate(NOW + 86400, usegmt=True).encode(), MAX_SECONDS),
    (b"Sun, 06 Nov 1994 08:49:37 GMT", 0),
])
def test_retry_after_is_seconds_or_a_date_defaulted_and_bounded(value, seconds):
    assert retry_after_seconds(value, now=NOW) == seconds
