"""Fixtures for the deployment tests: the chart, loaded once, and a cached renderer."""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from typing import Any

import helm_python as helm
import pytest
from deploy_support import CHART, NAMESPACE, RELEASE, Manifests, parse_manifests


@pytest.fixture(scope="session")
def chart() -> Iterator[helm.Chart]:
    with helm.Chart.load(CHART) as loaded:
        yield loaded


@pytest.fixture(scope="session")
def render(chart: helm.Chart) -> Callable[[dict[str, Any] | None], Manifests]:
    cache: dict[str, Manifests] = {}

    def _render(values: dict[str, Any] | None = None) -> Manifests:
        key = repr(values)
        if key not in cache:
            rendered = chart.render(values or {}, name=RELEASE, namespace=NAMESPACE)
            cache[key] = parse_manifests(rendered)
        return copy.deepcopy(cache[key])

    return _render
