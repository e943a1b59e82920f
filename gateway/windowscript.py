"""The Redis Lua script that decides all of a request's moving windows in one call.

`limits`' own strategy needs two round trips per request (read every window,
then hit each), each a separate Lua call per limit. This script makes the
same decision atomically in one call for every limit of the request, on
`limits`' own data (one Redis list of timestamps per limit, newest first,
under the same keys), so both paths count in the same windows:

- every window is read (count within the window, oldest entry in it);
- the cooldown keys Reusely's 429s left (`cooldown`) are read: the longest
  time-to-live of them is returned;
- with `consume` = 1, when no enforced (not shadow) window is full and no
  cooldown is running, each window that has room gets this request's
  timestamp (a full shadow window is only reported); with `consume` = 0
  nothing is written (the cheap pre-check before a body is read, and quotas).

Redis Cluster keeps each key in its own slot and refuses a multi-key script,
so there, and with memory storage, `limiter` uses `limits`' strategy instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

SCRIPT = """
local now = tonumber(ARGV[1])
local consume = ARGV[2] == '1'
local n = tonumber(ARGV[3])
local counts, oldest, full = {}, {}, 0
local function oldest_index(key, high, target)
    local low, result = 0, nil
    while low <= high do
        local mid = math.floor((low + high) / 2)
        local val = tonumber(redis.call('lindex', key, mid))
        if val and val >= target then
            result = mid
            low = mid + 1
        else
            high = mid - 1
        end
    end
    return result
end
for i = 1, n do
    local limit = tonumber(ARGV[i * 3 + 1])
    local expiry = tonumber(ARGV[i * 3 + 2])
    local index = oldest_index(KEYS[i], limit - 1, now - expiry)
    if index then
        counts[i] = index + 1
        oldest[i] = redis.call('lindex', KEYS[i], index)
    else
        counts[i] = 0
        oldest[i] = tostring(now)
    end
    if counts[i] >= limit and ARGV[i * 3 + 3] == '0' then
        full = 1
    end
end
local cooldown = 0
for i = n + 1, #KEYS do
    local ttl = redis.call('pttl', KEYS[i])
    if ttl > cooldown then
        cooldown = ttl
    end
end
local hit = {}
for i = 1, n do
    local limit = tonumber(ARGV[i * 3 + 1])
    hit[i] = 0
    if consume and full == 0 and cooldown == 0 and counts[i] < limit then
        redis.call('lpush', KEYS[i], ARGV[1])
        redis.call('ltrim', KEYS[i], 0, limit - 1)
        redis.call('expire', KEYS[i], tonumber(ARGV[i * 3 + 2]))
        hit[i] = 1
    end
end
return {full, counts, oldest, hit, cooldown}
"""


@dataclass(frozen=True, slots=True)
class Window:
    """One limit's window as the script found it, before this request."""

    count: int
    oldest: float
    hit: bool


def arguments(now: float, limits: list[tuple[int, int, bool]], *, consume: bool) -> list[Any]:
    """ARGV: the time, whether to consume, the number of limit keys, then
    (amount, expiry seconds, shadow) per limit key."""
    out: list[Any] = [repr(now), 1 if consume else 0, len(limits)]
    for amount, expiry, shadow in limits:
        out += [amount, expiry, 1 if shadow else 0]
    return out


def windows(reply: list[Any]) -> tuple[list[Window], int]:
    """The windows, and the milliseconds left of the longest cooldown (0: none)."""
    _, counts, oldest, hits, cooldown = reply
    return [Window(int(c), float(o), bool(h))
            for c, o, h in zip(counts, oldest, hits, strict=True)], int(cooldown)
