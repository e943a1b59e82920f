"""What reaches Reusely of headers a limit counts, or a Connection header lists."""

from __future__ import annotations

from gateway.headers import clean_request_headers, keep_last


def test_only_the_counted_copy_of_a_limited_header_is_forwarded():
    raw = [(b"x-shopper", b"victim"), (b"accept", b"*/*"), (b"x-shopper", b"decoy")]
    assert keep_last(raw, frozenset({b"x-shopper"})) == [(b"accept", b"*/*"),
                                                         (b"x-shopper", b"decoy")]
    assert keep_last(raw, frozenset()) == raw


def test_connection_cannot_remove_the_body_s_type_or_length():
    raw = [(b"connection", b"content-type, content-length, x-hop"),
           (b"content-type", b"application/json"), (b"content-length", b"2"), (b"x-hop", b"1")]
    assert clean_request_headers(raw) == [(b"content-type", b"application/json"),
                                          (b"content-length", b"2")]
