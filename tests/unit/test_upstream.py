"""Reusely's answer as the request path holds it: closing it always frees the connection."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator

import pytest

from gateway.upstream import UpstreamResponse


class Answer:
    """A transport's raw answer (the boundary `Upstream` is given), recording its release."""

    status = 200

    def __init__(self, *, fail_on_close: bool = False) -> None:
        self.headers = [(b"content-length", b"6")]
        self.fail_on_close = fail_on_close
        self.released = 0

    async def chunks(self) -> AsyncGenerator[bytes, None]:
        try:
            yield b"abc"
            yield b"def"
        finally:
            if self.fail_on_close:
                raise RuntimeError("closing the body failed")

    def release(self) -> None:
        self.released += 1


def test_an_answer_closed_part_read_closes_its_body_and_releases_the_connection() -> None:
    async def go() -> tuple[Answer, UpstreamResponse]:
        raw = Answer()
        response = UpstreamResponse(raw, list(raw.headers))
        assert await anext(response.body()) == b"abc"
        await response.aclose()
        return raw, response

    raw, response = asyncio.run(go())
    assert raw.released == 1
    assert response.content_length == 6
    with pytest.raises(StopAsyncIteration):  # the body is closed, not resumable
        asyncio.run(anext(response.body()))


def test_the_connection_is_released_even_when_closing_the_body_fails() -> None:
    async def go() -> Answer:
        raw = Answer(fail_on_close=True)
        response = UpstreamResponse(raw, list(raw.headers))
        assert await anext(response.body()) == b"abc"
        with pytest.raises(RuntimeError, match="closing the body failed"):
            await response.aclose()
        return raw

    assert asyncio.run(go()).released == 1
