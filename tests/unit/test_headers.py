"""headers: what may reach Reusely and what may reach the caller."""

from __future__ import annotations

import pytest

from gateway.headers import clean_request_headers, clean_response_headers

API_KEY = b"test-api-key-5f1c"
SECRETS = (API_KEY, b"test-secret-key-9e2d", b"old-rotated-key-1234")

MEANING_CHANGING = [
    "x-http-method-override", "x-http-method", "x-method-override", "x-original-url",
    "x-rewrite-url", "x-forwarded-host", "x-forwarded-port", "x-forwarded-prefix",
    "x-forwarded-server", "true-client-ip", "cf-connecting-ip", "x-client-ip", "x-real-ip",
    "forwarded",
]
DROPPED_SINCE_BEFORE = [
    "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer",
    "transfer-encoding", "upgrade", "proxy-connection", "host", "authorization", "cookie",
    "x-api-key", "x-secret-key", "x-tenant-id", "x-marketplace-key", "x-forwarded-for",
    "x-forwarded-proto", "x-request-id", "expect",
]


def names(headers: list[tuple[bytes, bytes]]) -> list[str]:
    return [n.decode() for n, _ in headers]


@pytest.mark.parametrize("name", MEANING_CHANGING + DROPPED_SINCE_BEFORE)
def test_headers_that_change_a_requests_meaning_upstream_are_dropped(name):
    raw = [(b"accept", b"*/*"), (name.encode(), b"1"), (b"x-kept", b"yes")]
    assert clean_request_headers(raw) == [(b"accept", b"*/*"), (b"x-kept", b"yes")]


@pytest.mark.parametrize("name", [
    "x_api_key", "x_secret_key", "x-api_key", "x_forwarded_for", "x_http_method_override",
    "_", "accept_encoding", "x_",
])
def test_any_header_whose_name_holds_an_underscore_is_dropped(name):
    raw = [(name.encode(), b"caller-value"), (b"content-type", b"application/json")]
    assert clean_request_headers(raw) == [(b"content-type", b"application/json")]


def test_headers_named_in_connection_are_dropped_and_the_rest_kept_in_order():
    raw = [(b"connection", b"keep-alive, X-Custom-Hop"), (b"x-custom-hop", b"1"),
           (b"content-type", b"application/json"), (b"x-b", b"2"), (b"x-a", b"1"),
           (b"x-a", b"3"), (b"if-none-match", b'"abc"'), (b"idempotency-key", b"k-1")]
    assert clean_request_headers(raw) == [
        (b"content-type", b"application/json"), (b"x-b", b"2"), (b"x-a", b"1"), (b"x-a", b"3"),
        (b"if-none-match", b'"abc"'), (b"idempotency-key", b"k-1")]


def test_response_headers_are_lowered_and_hop_by_hop_cookies_cors_and_credentials_dropped():
    raw = [(b"Content-Type", b"application/json"), (b"Set-Cookie", b"s=1"),
           (b"X-Api-Key", b"leaked"), (b"Connection", b"x-hop"), (b"X-Hop", b"1"),
           (b"Access-Control-Allow-Origin", b"*"), (b"Date", b"today"),
           (b"X-Request-ID", b"theirs"), (b"ETag", b'"v1"')]
    assert clean_response_headers(raw, SECRETS) == [
        (b"content-type", b"application/json"), (b"etag", b'"v1"')]


@pytest.mark.parametrize("value", [
    b"key=test-api-key-5f1c", b"test-api-key-5f1c", b"Bearer test-secret-key-9e2d; x",
    b"old-rotated-key-1234",
])
def test_a_response_header_holding_a_credential_value_is_dropped_whatever_its_name(value):
    raw = [(b"x-debug-auth", value), (b"content-type", b"application/json")]
    assert clean_response_headers(raw, SECRETS) == [(b"content-type", b"application/json")]


def test_short_credential_values_are_not_looked_for():
    raw = [(b"x-count", b"1234567"), (b"x-ok", b"abc")]
    assert clean_response_headers(raw, (b"1234567", b"", b"abc")) == raw
    assert clean_response_headers(raw, (b"12345678",)) == raw
    assert clean_response_headers([(b"x-count", b"12345678")], (b"12345678",)) == []


def test_without_credential_values_only_the_named_rules_apply():
    raw = [(b"x-debug-auth", b"key=test-api-key-5f1c")]
    assert clean_response_headers(raw, ()) == raw


def test_ordinary_headers_pass_both_ways_untouched():
    raw = [(f"x-h{i}".encode(), b"v" * 100) for i in range(100)]
    assert clean_request_headers(raw) == raw
    assert clean_response_headers(raw, SECRETS) == raw
