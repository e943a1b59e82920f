"""What the cache may keep (security-relevant: a kept answer goes to every caller), how a
kept answer is stored, and the memory stand-in for Redis."""

from __future__ import annotations

import asyncio

import pytest

from gateway.cache import (
    HIT,
    MAX_ENTRY_BYTES,
    STALE,
    Copies,
    Entry,
    cacheable,
    entry_of,
    pack,
    unpack,
)
from gateway.cachestore import (
    FAILED,
    FRESH,
    LOCKED,
    PASS,
    TAKEN,
    MemoryEntries,
    RedisEntries,
    mark,
)
from gateway.environment import default_policy_text
from gateway.policy import parse_policy, parse_yaml

JSON = [(b"content-type", b"application/json"), (b"content-length", b"12")]


# -- what may be kept --------------------------------------------------------------


def test_a_plain_200_with_a_content_length_may_be_kept():
    assert cacheable(200, JSON) == 12


@pytest.mark.parametrize("status", [201, 203, 204, 206, 301, 302, 304, 401, 404, 429, 500, 503])
def test_only_a_200_may_be_kept(status):
    assert cacheable(status, JSON) is None


@pytest.mark.parametrize("length", [None, b"", b"12 ", b"+12", b"-1", b"1e3", b"0x10", b"\xd9\xa1"])
def test_an_answer_without_a_plain_content_length_is_not_kept(length):
    headers = [(b"content-type", b"application/json")]
    if length is not None:
        headers.append((b"content-length", length))
    assert cacheable(200, headers) is None


def test_an_answer_with_more_header_fields_than_a_request_may_have_is_not_kept():
    assert cacheable(200, [*JSON, *[(b"x-n", b"1")] * 98]) == 12
    assert cacheable(200, [*JSON, *[(b"x-n", b"1")] * 99]) is None


def test_an_answer_larger_than_the_bound_is_not_kept():
    at = [(b"content-length", str(MAX_ENTRY_BYTES).encode())]
    over = [(b"content-length", str(MAX_ENTRY_BYTES + 1).encode())]
    assert cacheable(200, at) == MAX_ENTRY_BYTES
    assert cacheable(200, over) is None


@pytest.mark.parametrize("value", [
    b"private", b"no-store", b"no-cache", b"PRIVATE", b"No-Store", b"max-age=60, private",
    b"public, no-cache=\"set-cookie\"", b"private=\"x-user\"", b"s-maxage=60,no-store",
])
def test_cache_control_private_no_store_or_no_cache_is_never_kept(value):
    assert cacheable(200, [*JSON, (b"cache-control", value)]) is None


@pytest.mark.parametrize("value", [b"public, max-age=60", b"max-age=0", b"must-revalidate"])
def test_other_cache_control_directives_do_not_prevent_keeping(value):
    assert cacheable(200, [*JSON, (b"cache-control", value)]) == 12


@pytest.mark.parametrize("value", [
    b"accept-encoding", b"origin", b"Accept-Encoding, Origin", b"origin,accept-encoding",
])
def test_vary_on_accept_encoding_and_origin_may_be_kept(value):
    assert cacheable(200, [*JSON, (b"vary", value)]) == 12


@pytest.mark.parametrize("value", [
    b"*", b"cookie", b"authorization", b"accept-encoding, user-agent", b"Accept-Language",
    b"", b"accept-encoding,,", b"x-api-key",
])
def test_vary_on_anything_else_is_never_kept(value):
    assert cacheable(200, [*JSON, (b"vary", value)]) is None


def test_a_second_vary_or_cache_control_header_counts_too():
    headers = [*JSON, (b"vary", b"origin"), (b"vary", b"cookie")]
    assert cacheable(200, headers) is None
    headers = [*JSON, (b"cache-control", b"public"), (b"cache-control", b"no-store")]
    assert cacheable(200, headers) is None


# -- a kept answer -----------------------------------------------------------------


def test_reuselys_own_age_is_not_kept_ours_is_written_on_use():
    entry = entry_of(200, [*JSON, (b"age", b"100")], b'{"ok": true}', 60, now=1000.0)
    assert (b"age", b"100") not in entry.headers and entry.fresh_until == 1060.0
    assert entry.age(1000.9) == b"0" and entry.age(1061.5) == b"61"
    assert entry.age(999.0) == b"0"  # another replica's clock behind: never negative


def test_stale_windows_count_from_the_end_of_freshness():
    entry = entry_of(200, JSON, b"x", 60, now=1000.0)
    assert entry.within(30, 1090.0) and not entry.within(30, 1090.5)
    assert not entry.within(None, 1060.5)


def test_a_kept_answer_survives_its_trip_through_redis_byte_for_byte():
    entry = Entry(200, [(b"x-empty", b""), (b"content-length", b"3"), (b"x-\xff", b"\x00\r")],
                  b"\x00\xff\n", 1712345678.123, 1712345978.123)
    assert unpack(pack(entry)) == entry


@pytest.mark.parametrize("data", [
    b"", b"\x01", b"garbage" * 10, b"\x02" + pack(Entry(200, [], b"", 1.0, 2.0))[1:],
    pack(Entry(200, [(b"a", b"b" * 50)], b"", 1.0, 2.0))[:30],
])
def test_what_this_version_did_not_write_is_no_entry(data):
    assert unpack(data) is None


# -- the worker's copies -----------------------------------------------------------


def test_a_copy_is_served_until_its_deadline_and_says_how():
    copies = Copies()
    entry = entry_of(200, JSON, b"x" * 12, 60, now=1000.0)
    copies.put(("r", "/a", b""), entry, 1005.0)
    copies.put(("r", "/b", b""), entry, 1001.0, STALE)
    assert copies.get(("r", "/a", b""), 1004.9) == (entry, HIT)
    assert copies.get(("r", "/b", b""), 1000.5) == (entry, STALE)
    assert copies.get(("r", "/a", b""), 1005.0) is None
    assert copies.get(("r", "/a", b"gzip"), 1000.0) is None


def test_copies_are_bounded_in_bytes_least_recently_used_first():
    from gateway.cache import KEY_OVERHEAD

    copies = Copies(max_bytes=2 * (40 + len("ra") + KEY_OVERHEAD) + 10)  # room for two
    entries = {name: entry_of(200, [], b"x" * 40, 60, now=0.0) for name in "abc"}
    copies.put(("r", "a", b""), entries["a"], 10.0)
    copies.put(("r", "b", b""), entries["b"], 10.0)
    assert copies.get(("r", "a", b""), 1.0) is not None  # a is now the most recent
    copies.put(("r", "c", b""), entries["c"], 10.0)
    assert copies.get(("r", "b", b""), 1.0) is None
    assert copies.get(("r", "a", b""), 1.0) is not None
    assert copies.get(("r", "c", b""), 1.0) is not None


# -- the memory stand-in for Redis plays the same script ---------------------------


async def play(entries: MemoryEntries | RedisEntries) -> list[tuple[int, bool, bool]]:
    """One key's life through lookups, locks, marks and stores; (state, entry?, failing)."""
    seen = []

    async def look(now_ms: int, token: str) -> None:
        state, entry, failing = await entries.lookup("k", now_ms, mark("L", now_ms + 500, token),
                                                     500, 10_000)
        seen.append((state, entry is not None, failing))

    await look(0, "a")  # nobody holds it: taken
    await look(10, "b")  # held by a
    await entries.release("k", "b", mark("P", 1010, "b"), 1000, False)  # not b's: ignored
    await look(20, "b")
    await entries.release("k", "a", mark("P", 1030, "a"), 1000, False)
    await look(40, "b")  # a's answer could not be kept: go yourself
    await look(1040, "b")  # the mark has passed: taken by b
    await entries.store("k", Entry(200, [], b"x", 1.05, 2.05), "b", 10_000)
    await look(1100, "c")  # fresh
    await look(2100, "c")  # expired, within the window: taken, with the stale entry
    await entries.release("k", "c", mark("F", 3100, "c"), 1000, True)
    await look(2200, "d")  # Reusely failed: stale, failing
    await look(3200, "d")  # mark passed: taken, still failing
    await entries.release("k", "d", mark("P", 4210, "d"), 1000, False)  # Reusely answered
    await look(3300, "e")  # not kept, but no longer failing
    await look(4300, "e")
    await entries.store("k", Entry(200, [], b"y", 4.3, 5.3), "e", 10_000)
    await look(4400, "f")
    await look(15_400, "f")  # past freshness and window: nothing to serve
    return seen


PLAYED = [
    (TAKEN, False, False), (LOCKED, False, False), (LOCKED, False, False), (PASS, False, False),
    (TAKEN, False, False), (FRESH, True, False), (TAKEN, True, False), (FAILED, True, True),
    (TAKEN, True, True), (PASS, True, False), (TAKEN, True, False), (FRESH, True, False),
    (TAKEN, False, False),
]


def test_memory_entries_lock_mark_store_and_go_stale_like_the_redis_script():
    assert asyncio.run(play(MemoryEntries())) == PLAYED


def test_the_default_policy_caches_the_catalog_reads_only():
    policy = parse_policy(parse_yaml(default_policy_text(), "default policy"))
    cached = {r.name: (r.cache_ttl, r.stale_while_revalidate, r.stale_if_error)
              for r in policy.routes if r.cache_ttl}
    assert cached == {"catalog": (300, 60, 3600)}
    catalog = next(r for r in policy.routes if r.name == "catalog")
    assert catalog.methods == ("GET",) and catalog.access == "public"


def test_a_workers_copies_count_their_keys_too():
    from gateway.cache import KEY_OVERHEAD

    copies = Copies(max_bytes=100_000)
    entry = entry_of(200, [], b"{}", 60, now=0.0)
    targets = [f"/c?q={i}{'x' * 12_000}" for i in range(100)]  # unique 12 KB targets
    for target in targets:
        copies.put(("catalog", target, b""), entry, 10.0)
    kept = sum(1 for t in targets if copies.get(("catalog", t, b""), 1.0) is not None)
    assert 1 <= kept <= 100_000 // (12_000 + KEY_OVERHEAD)
