"""Reading a body-keyed request once, the way Reusely reads it."""

from __future__ import annotations

import json

import pytest

from gateway.body import check_media_type, check_query, has_body, is_small, keyed_values
from gateway.errors import InvalidBody, UnsupportedMediaType

EMAIL = ("email",)


def test_present_fields_are_normalised_and_absent_null_or_empty_ones_left_out():
    fields = ("email", "phone")
    assert keyed_values(b'{"email": " Ada@Example.com ", "phone": "+1 (555) 010-0000"}',
                        fields) == {"body:email": "ada@example.com", "body:phone": "15550100000"}
    assert keyed_values(b'{"email": "a@b.c"}', fields) == {"body:email": "a@b.c"}
    assert keyed_values(b'{"email": null, "phone": "555"}', fields) == {"body:phone": "555"}
    assert keyed_values(b'{"email": "a@b.c", "phone": ""}', fields) == {"body:email": "a@b.c"}
    assert keyed_values(b'{"email": "\\u200b", "phone": "  "}', fields) == {}
    assert keyed_values(b'{"other": 1}', fields) == {}
    assert keyed_values(b"{}", fields) == {}
    assert keyed_values(b"", fields) == {}  # no body: every value absent


def test_nested_fields_are_found_by_dotted_name():
    fields = ("customer.email",)
    assert keyed_values(b'{"customer": {"email": "A@B.C"}}', fields) == {
        "body:customer.email": "a@b.c"}
    assert keyed_values(b'{"customer": null}', fields) == {}
    with pytest.raises(InvalidBody):
        keyed_values(b'{"customer": "a@b.c"}', fields)


@pytest.mark.parametrize("body", [
    b"not json", b"[]", b'["email"]', b'"a@b.c"', b"42", b"null", b"true",
    b'{"email": "a@b.c"', b"\xff\xfe\x00",
    '{"email": "a@b.c"}'.encode("utf-16"),  # Python would read it; Reusely's parser would not
    b'\xef\xbb\xbf{"email": "a@b.c"}',  # a BOM before the JSON
    b'{"email": "a@b.c", "email": "victim@example.com"}',  # parsers disagree on which wins
    b'{"customer": {"x": 1, "x": 2}, "email": "a@b.c"}',
    b'{"email": "a@b.\xed\xa0\x80"}',  # a lone surrogate as raw bytes: not UTF-8
])
def test_a_body_that_is_not_one_utf8_json_object_is_invalid(body):
    with pytest.raises(InvalidBody):
        keyed_values(body, EMAIL)


def test_a_deeply_nested_body_is_invalid_not_a_crash():
    with pytest.raises(InvalidBody):
        keyed_values(b"[" * 100_000 + b"]" * 100_000, EMAIL)


@pytest.mark.parametrize("value", [1, 1.5, True, False, [], ["a@b.c"], {"v": "a@b.c"}])
def test_a_present_field_that_is_not_a_string_is_invalid(value):
    with pytest.raises(InvalidBody):
        keyed_values(json.dumps({"email": value}).encode(), EMAIL)


@pytest.mark.parametrize("escaped", [b'"\\ud800"', b'"a\\udfff@b.c"', b'"\\udc00\\ud800"'])
def test_a_field_holding_a_lone_surrogate_escape_is_invalid_not_a_crash(escaped):
    with pytest.raises(InvalidBody):
        keyed_values(b'{"email": ' + escaped + b"}", EMAIL)


def test_a_surrogate_pair_is_a_character_and_fine():
    assert keyed_values(b'{"email": "\\ud83d\\ude00@b.c"}', EMAIL) == {
        "body:email": "\U0001f600@b.c"}


@pytest.mark.parametrize("value", [b"application/json", b"Application/JSON",
                                   b"application/json; charset=utf-8",
                                   b"application/problem+json", b"application/vnd.api+json; v=1"])
def test_json_media_types_are_accepted(value):
    check_media_type([(b"content-type", value)])


@pytest.mark.parametrize("headers", [
    [], [(b"content-type", b"text/plain")],
    [(b"content-type", b"application/x-www-form-urlencoded")],
    [(b"content-type", b"multipart/form-data; boundary=x")],
    [(b"content-type", b"application/jsonx")], [(b"content-type", b"text/json")],
    [(b"content-type", b"application/json"), (b"content-type", b"application/json")],
    [(b"content-type", b"application/x-www-form-urlencoded"),
     (b"content-type", b"application/json")],
])
def test_a_missing_repeated_or_other_media_type_is_415(headers):
    with pytest.raises(UnsupportedMediaType):
        check_media_type(headers)


@pytest.mark.parametrize("query", [b"email=v@x", b"EMAIL=v@x", b"a=1&Email=v@x", b"e%6dail=v@x",
                                   b"x=1;email=v", b"email", b"customer[email]=v",
                                   b"customer%5Bemail%5D=v", b"customer[email][]=v",
                                   b"customer.email=v", b"+email=v"])
def test_a_query_naming_a_body_field_is_invalid(query):
    with pytest.raises(InvalidBody):
        check_query(query, ("email", "customer.email"))


@pytest.mark.parametrize("query", [b"", b"ref=email", b"emails=1", b"note=a@b.c",
                                   b"customer[phone]=1", b"customer=email"])
def test_a_query_naming_no_body_field_passes(query):
    check_query(query, ("email", "customer.email"))


def test_a_body_is_announced_by_a_length_or_chunking():
    assert has_body({b"content-length": b"3"})
    assert has_body({b"transfer-encoding": b"chunked"})
    assert not has_body({b"content-length": b"0"})
    assert not has_body({})


def test_a_small_body_is_one_known_to_be_at_most_4_kib():
    assert is_small({}, None)  # no body at all
    assert is_small({b"content-length": b"4096"}, None)
    assert not is_small({b"content-length": b"4097"}, None)
    assert not is_small({b"content-length": b"12, 12"}, None)
    assert not is_small({b"transfer-encoding": b"chunked"}, None)  # unknown until read
    assert is_small({b"transfer-encoding": b"chunked"}, b"x" * 4096)  # known once read
    assert not is_small({}, b"x" * 4097)


@pytest.mark.parametrize("escaped", [b'"victim@example.com\\u0000"', b'"vic\\u0001tim@example.com"',
                                     b'"victim@example.com\\u007f"', b'"\\b victim@example.com"',
                                     b'"vic\\u0085tim@example.com"'])
def test_a_field_with_a_control_character_left_is_invalid(escaped):
    with pytest.raises(InvalidBody):
        keyed_values(b'{"email": ' + escaped + b"}", EMAIL)


def test_surrounding_whitespace_controls_are_trimmed_not_refused():
    assert keyed_values(b'{"email": "\\tvictim@example.com\\r\\n"}', EMAIL) == {
        "body:email": "victim@example.com"}
