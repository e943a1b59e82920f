"""Idempotency-Key syntax, what is kept, and the kept answer's round trip."""

from __future__ import annotations

import asyncio

import pytest

from gateway.environment import load_settings
from gateway.errors import (
    IdempotencyKeyInUse,
    IdempotencyKeyRequired,
    IdempotencyKeyReused,
    InvalidIdempotencyKey,
)
from gateway.idempotency import (
    REPLAYED,
    Claim,
    Idempotency,
    Replay,
    fingerprint,
    keepable,
    pack,
    parse_key,
    unpack,
)
from gateway.limitkeys import LimitKeys
from gateway.store import Store


@pytest.mark.parametrize(("sent", "key"), [
    (b"8e03978e-40d5-43e8-bc93-6894a57f9324", "8e03978e-40d5-43e8-bc93-6894a57f9324"),
    (b'"8e03978e-40d5-43e8-bc93-6894a57f9324"', "8e03978e-40d5-43e8-bc93-6894a57f9324"),
    (b"  abc\t", "abc"), (b"!", "!"), (b"~" * 255, "~" * 255), (b'"a\\"b"', 'a"b'),
    (b'"a\\\\b"', "a\\b"), (b"a\"b", 'a"b'),
])
def test_a_key_is_bare_or_quoted_visible_ascii(sent, key):
    assert parse_key([sent]) == key


@pytest.mark.parametrize("sent", [
    b"", b"  ", b'""', b'"', b'"abc', b"a b", b'"a b"', b"x" * 256, b'"' + b"x" * 256 + b'"',
    b"caf\xc3\xa9", b"a\x00b", b"a\x7fb", b'"a\\b"', b'"abc\\"', b'"a"b"', b"\t",
])
def test_anything_else_is_an_invalid_key(sent):
    with pytest.raises(InvalidIdempotencyKey):
        parse_key([sent])


def test_no_header_is_no_key_and_two_are_invalid():
    assert parse_key([]) is None
    with pytest.raises(InvalidIdempotencyKey):
        parse_key([b"a", b"a"])


@pytest.mark.parametrize(("status", "kept"), [
    (200, True), (201, True), (204, True), (299, True), (400, True), (404, True), (422, True),
    (401, False), (408, False), (409, False), (425, False), (429, False), (500, False),
    (502, False), (503, False), (301, False), (100, False),
])
def test_what_is_kept(status, kept):
    assert keepable(status) is kept


def test_a_kept_answer_survives_packing_byte_for_byte():
    marker = b"F" + b"p" * 32 + b"t" * 16
    headers = [(b"content-type", b"application/json"), (b"x-empty", b""), (b"x-bin", b"\xff\x00")]
    body = b'{"result": {"offer_id": 1}}' + bytes(range(256))
    packed = pack(marker, 201, headers, body)
    assert packed[1:33] == marker[1:33]
    assert unpack(packed) == (201, headers, body)


def test_the_fingerprint_covers_method_target_and_exact_body():
    one = fingerprint("POST", "/m?a=1", b'{"a":1}')
    assert one == fingerprint("POST", "/m?a=1", b'{"a":1}')
    assert one != fingerprint("PUT", "/m?a=1", b'{"a":1}')
    assert one != fingerprint("POST", "/m?a=2", b'{"a":1}')
    assert one != fingerprint("POST", "/m?a=1", b'{"a": 1}')


POLICY = """
routes:
  - name: mail-in
    path: /m
    methods: [GET, POST]
    idempotency: {ttl: 60, required: true}
"""


def test_in_memory_claims_replays_and_refusals():
    settings = load_settings({}, text=POLICY, source="test")
    route = settings.policy.routes[0]

    async def go() -> None:
        keeper = Idempotency(Store(None, budget=0.25), LimitKeys(b"k" * 32))
        assert keeper.key_of(route, "GET", []) is None  # safe methods are not keyed
        with pytest.raises(IdempotencyKeyRequired):
            keeper.key_of(route, "POST", [])
        first = fingerprint("POST", "/m", b"{}")
        claim = await keeper.claim(route, "public", "k1", first)
        assert isinstance(claim, Claim)
        with pytest.raises(IdempotencyKeyInUse):
            await keeper.claim(route, "public", "k1", first)
        with pytest.raises(IdempotencyKeyReused):
            await keeper.claim(route, "public", "k1", fingerprint("POST", "/m", b"{ }"))
        assert isinstance(await keeper.claim(route, "pricing", "k1", first), Claim)  # scope
        await claim.keep(201, [(b"content-type", b"application/json")], b'{"ok":1}')
        replay = await keeper.claim(route, "public", "k1", first)
        assert isinstance(replay, Replay)
        assert (replay.status, replay.body) == (201, b'{"ok":1}')
        assert replay.headers[-1] == REPLAYED
        with pytest.raises(IdempotencyKeyReused):
            await keeper.claim(route, "public", "k1", fingerprint("POST", "/m", b"{ }"))
        freed = await keeper.claim(route, "public", "k2", first)
        assert isinstance(freed, Claim)
        await freed.free()
        assert isinstance(await keeper.claim(route, "public", "k2", first), Claim)

    asyncio.run(go())
