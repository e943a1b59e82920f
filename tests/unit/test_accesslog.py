"""accesslog: masking of emails and phones, and the JSON formatter's second net."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import re
import sys
from collections.abc import Iterator

import pytest

from gateway.accesslog import ACCESS_FIELDS, AccessLog
from gateway.logsetup import JsonFormatter
from gateway.redact import mask

SECRETS = ("test-api-key-5f1c", "test-secret-key-9e2d")


@pytest.mark.parametrize(("text", "masked"), [
    ("/api/v2/public/catalog/john.doe@example.com", "/api/v2/public/catalog/[email]"),
    ("/c/Jane.Roe+tag@Example.co.uk/next", "/c/[email]/next"),
    ("to a.b@c.io and x_y@d.example.org", "to [email] and [email]"),
    ("/c/+15550100000", "/c/[phone]"),
    ("/c/15550100000", "/c/[phone]"),
    ("/c/+1 (555) 010-0000", "/c/[phone]"),
    ("/c/(555) 010 0000/x", "/c/[phone]/x"),
    ("/c/555-010-0000", "/c/[phone]"),
    ("/c/555.010.0000", "/c/[phone]"),
    ("/c/+1.555.010.0000", "/c/[phone]"),
    ("/c/+44 20 7946 0958", "/c/[phone]"),
    ("/c/0044-20-7946-0958", "/c/[phone]"),
    ("phone=+33 6 12 34 56 78&x=1", "phone=[phone]&x=1"),
    ("/c/tel:+15550100000", "/c/tel:+[phone]"),
])
def test_emails_and_phones_are_masked(text, masked):
    assert mask(text) == masked


@pytest.mark.parametrize("text", [
    "127.0.0.1:8080",
    "10.0.0.12",
    "192.168.100.200",
    "[::1]:9464",
    "[2001:db8::8a2e:370:7334]:443",
    "Listening at: http://127.0.0.1:52121 (19585)",
    "/api/v2/admin/orders/12345",
    "/items/1234567",
    "/c/2024-01-31",
    "2026-11-27T06:43:47.369Z",
    "version 1.22.333",
    "id abc12345678",
    "order-7f3a9c21d4e5b6a7",
    "duration 57.308 ms",
    "Booting worker with pid: 19595",
    "/api/v2/public/catalog/categories?limit=20",
])
def test_addresses_ports_dates_and_short_ids_are_kept(text):
    assert mask(text) == text


@pytest.fixture
def capture() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    """A private logger writing through JsonFormatter into a buffer."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter(SECRETS))
    logger = logging.getLogger(f"test.accesslog.{id(stream)}")
    logger.handlers = [handler]
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    yield logger, stream
    logger.handlers = []
    handler.close()


def lines(stream: io.StringIO) -> list[dict[str, object]]:
    out = stream.getvalue().splitlines()
    return [json.loads(line) for line in out]


def test_each_record_is_one_json_line_with_time_level_logger_and_message(capture):
    logger, stream = capture
    logger.warning("route %s is disabled", "market")
    [line] = lines(stream)
    assert line["level"] == "warning"
    assert line["logger"] == logger.name
    assert line["message"] == "route market is disabled"
    assert str(line["time"]).endswith("Z")


def test_configured_secret_values_are_replaced_wherever_they_appear(capture):
    logger, stream = capture
    logger.info("sent x-api-key %s to %s", SECRETS[0], f"/x/{SECRETS[1]}/y")
    AccessLog(logger).record(request_id=SECRETS[0], client="public", route="r", method="GET",
                             path=f"/c/{SECRETS[1]}", status=200, duration_ms=1.5,
                             upstream_status=200, limited=False)
    text = stream.getvalue()
    assert not any(s in text for s in SECRETS)
    assert text.count("[secret]") == 4
    assert all(lines(stream))


def test_an_exception_is_written_as_type_and_message_never_a_traceback(capture):
    logger, stream = capture
    try:
        raise ValueError(f"bad key {SECRETS[0]} for jane@example.com, call +15550100000")
    except ValueError:
        logger.exception("unexpected error handling a request")
        logger.error("again", exc_info=sys.exc_info())
    for line in lines(stream):
        assert line["error"] == "ValueError: bad key [secret] for [email], call [phone]"
    text = stream.getvalue()
    assert "Traceback" not in text and "File " not in text and __file__ not in text
    assert len(text.splitlines()) == 2


def test_an_exception_chained_from_another_shows_neither_traceback(capture):
    logger, stream = capture
    try:
        try:
            raise KeyError("inner")
        except KeyError as exc:
            raise RuntimeError("outer") from exc
    except RuntimeError as exc:
        logger.error("failed", exc_info=exc)
    [line] = lines(stream)
    assert line["error"] == "RuntimeError: outer"
    assert "Traceback" not in stream.getvalue()


def test_an_access_line_holds_exactly_its_fields_with_the_path_masked(capture):
    logger, stream = capture
    fields = {"request_id": "abc", "client": "public", "route": "catalog", "method": "GET",
              "path": "/api/v2/public/catalog/john@example.com/+15550100000", "status": 200,
              "duration_ms": 3.25, "upstream_status": 200, "limited": False}
    AccessLog(logger).record(**fields)  # type: ignore[arg-type]
    [line] = lines(stream)
    assert set(line) == {"time", "level", "logger", *ACCESS_FIELDS}
    assert line["path"] == "/api/v2/public/catalog/[email]/[phone]"
    assert {k: line[k] for k in ACCESS_FIELDS if k != "path"} == {
        k: v for k, v in fields.items() if k != "path"}


def test_the_access_log_writes_nothing_when_info_is_off(capture):
    logger, stream = capture
    logger.setLevel(logging.WARNING)
    AccessLog(logger).record("r", "public", "r", "GET", "/x", 200, 1.0, 200, False)
    assert stream.getvalue() == ""


@pytest.mark.parametrize("fields", [
    {"request_id": "abc", "client": "public", "route": "catalog", "method": "GET",
     "path": "/api/v2/public/catalog/john@example.com/+15550100000", "status": 200,
     "duration_ms": 3.25, "upstream_status": 200, "limited": False},
    {"request_id": "a" * 128, "client": "pricing-team", "route": "unmatched", "method": "PATCH",
     "path": f"/\u00e9\"\\\x01/{SECRETS[0]}/\U0001f600", "status": 429,
     "duration_ms": 0.001, "upstream_status": None, "limited": True},
    {"request_id": SECRETS[1], "client": "public", "route": "r", "method": "GET", "path": "",
     "status": 0, "duration_ms": 12345.678, "upstream_status": 502, "limited": False},
])
def test_the_access_line_is_byte_for_byte_what_the_json_formatter_writes(capture, fields):
    logger, stream = capture
    AccessLog(logger).record(**fields)
    [written] = stream.getvalue().splitlines()
    record = logging.LogRecord("gateway.access", logging.INFO, __file__, 1, "request", None, None)
    record.access = fields
    expected = logger.handlers[0].formatter.format(record)  # type: ignore[union-attr]
    time_of = re.compile(r'^\{"time":"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z",')
    assert time_of.match(written) and time_of.match(expected)
    assert time_of.sub("", written) == time_of.sub("", expected)


def test_the_lines_of_one_loop_turn_go_out_in_one_write(capture):
    logger, stream = capture
    writes: list[str] = []
    real_write = stream.write
    stream.write = lambda text: writes.append(text) or real_write(text)  # type: ignore[method-assign]

    async def three_requests() -> None:
        log = AccessLog(logger)
        for i in range(3):
            log.record(f"r{i}", "public", "r", "GET", "/x", 200, 1.0, 200, False)
        assert writes == []  # not yet: at the end of this turn
        await asyncio.sleep(0)

    asyncio.run(three_requests())
    assert len(writes) == 1 and len(lines(stream)) == 3


def test_empty_and_very_short_values_are_not_treated_as_secrets():
    formatter = JsonFormatter(("", "k", "key-0123"))
    assert formatter.secrets == ("key-0123",)
    record = logging.LogRecord("gateway", logging.INFO, __file__, 1, "keep k, hide key-0123",
                               None, None)
    assert json.loads(formatter.format(record))["message"] == "keep k, hide [secret]"


def test_a_secret_that_json_would_escape_is_still_replaced():
    secret = 'p"a\\ss-ü'
    formatter = JsonFormatter((secret,))
    record = logging.LogRecord("gateway", logging.INFO, __file__, 1, "key %s", (secret,), None)
    line = formatter.format(record)
    assert json.loads(line)["message"] == "key [secret]"


def test_a_secret_that_looks_like_a_phone_is_replaced_whole():
    secret = "tenant-15550100000-x"
    formatter = JsonFormatter((secret,))
    record = logging.LogRecord("gateway", logging.INFO, __file__, 1, "id %s", (secret,), None)
    assert json.loads(formatter.format(record))["message"] == "id [secret]"
