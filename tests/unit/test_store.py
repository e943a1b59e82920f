"""Bounding calls to Redis by the worker's own attention: busy is not down."""

from __future__ import annotations

import asyncio
import time

import pytest

from gateway.errors import StoreError
from gateway.store import HARD_SECONDS, attend


async def answer_after(seconds: float) -> str:
    await asyncio.sleep(seconds)
    return "answer"


async def hog(seconds: float, times: int) -> None:
    """Another request's CPU work: blocks the event loop `times` times for `seconds`."""
    for _ in range(times):
        time.sleep(seconds)  # noqa: ASYNC251 - it is the CPU work that blocks the loop
        await asyncio.sleep(0)


def test_an_answer_in_time_is_returned():
    assert asyncio.run(attend(answer_after(0.01), 0.2)) == "answer"


def test_a_call_that_never_answers_is_given_up_after_the_budget():
    async def go() -> tuple[str, float]:
        started = time.monotonic()
        with pytest.raises(StoreError) as err:
            await attend(answer_after(3600), 0.2)
        return err.value.kind, time.monotonic() - started

    kind, took = asyncio.run(go())
    assert kind == "timeout"
    assert 0.15 <= took < 0.6


def test_a_busy_loop_is_not_a_slow_redis():
    """The answer comes 10 ms after the call, but the loop is blocked for 0.3 s at a time.

    A wall-clock timeout of the same budget gives up; attention does not.
    """
    async def go() -> tuple[str, bool]:
        hogging = asyncio.create_task(hog(0.3, 3))
        await asyncio.sleep(0)
        got = await attend(answer_after(0.01), 0.2)
        await hogging
        hogging = asyncio.create_task(hog(0.3, 3))
        await asyncio.sleep(0)
        try:
            await asyncio.wait_for(answer_after(0.01), 0.2)
            wall_clock_gave_up = False
        except TimeoutError:
            wall_clock_gave_up = True
        await hogging
        return got, wall_clock_gave_up

    got, wall_clock_gave_up = asyncio.run(go())
    assert got == "answer"
    assert wall_clock_gave_up  # the trap this avoids


def test_a_worker_too_busy_to_hear_for_seconds_gives_up_as_busy():
    async def go() -> tuple[str, float]:
        hogging = asyncio.create_task(hog(HARD_SECONDS / 2 + 0.1, 3))
        await asyncio.sleep(0)
        started = time.monotonic()
        with pytest.raises(StoreError) as err:
            await attend(answer_after(3600), 1.0)
        took = time.monotonic() - started
        await hogging
        return err.value.kind, took

    kind, took = asyncio.run(go())
    assert kind == "busy"
    assert HARD_SECONDS <= took < HARD_SECONDS + 2


def test_an_outside_cancellation_stays_a_cancellation():
    async def go() -> None:
        task = asyncio.create_task(attend(answer_after(3600), 5.0))
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(go())


def test_the_task_is_not_left_cancelled_after_a_give_up():
    async def go() -> str:
        with pytest.raises(StoreError):
            await attend(answer_after(3600), 0.05)
        await asyncio.sleep(0.01)  # would raise CancelledError if a cancel were left pending
        return await attend(answer_after(0.01), 0.2)

    assert asyncio.run(go()) == "answer"
