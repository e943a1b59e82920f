"""Helpers for the deployment tests: paths, manifest access, metric names.

Everything runs offline: Helm is the helm-python-sdk library (Helm v4 as a
shared library, no binary, no cluster), Kubernetes schemas come bundled with
kubernetes-validate.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from tests.support.metrics import METRICS

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "reusely-gateway"
ALERTS = CHART / "files" / "alerts.yaml"
DASHBOARD = CHART / "dashboards" / "gateway.json"
KUBE_VERSION = "1.33.0"
RELEASE = "rg"
NAMESPACE = "shop"

# Labels Prometheus adds at scrape time (job, instance) or the operator adds
# (namespace, pod, ...), plus the histogram bucket label.
TARGET_LABELS = {"job", "instance", "namespace", "pod", "service", "endpoint", "container"}


def allowed_series() -> dict[str, set[str]]:
    """Every series name a query may use, with the labels it may carry: the metrics the
    gateway exports (`METRICS`, as docs/operations.md lists them), and `up`."""
    names: dict[str, set[str]] = {"up": set()}
    for name, (kind, metric_labels) in METRICS.items():
        labels = TARGET_LABELS | metric_labels
        names[name] = labels
        if kind == "histogram":
            names[f"{name}_bucket"] = labels | {"le"}
            names[f"{name}_sum"] = labels
            names[f"{name}_count"] = labels
    names["up"] = TARGET_LABELS
    return names


Manifests = list[dict[str, Any]]


def load_values_file(name: str) -> dict[str, Any]:
    loaded = yaml.safe_load((CHART / name).read_text())
    assert isinstance(loaded, dict)
    return loaded


def production_values() -> dict[str, Any]:
    return load_values_file("values-production.yaml")


def parse_manifests(rendered: dict[str, str]) -> Manifests:
    objects: Manifests = []
    for path, text in sorted(rendered.items()):
        if path.endswith("NOTES.txt"):
            continue
        for doc in yaml.safe_load_all(text):
            if doc:
                doc.setdefault("__template__", path)
                objects.append(doc)
    return objects


def strip_meta(obj: dict[str, Any]) -> dict[str, Any]:
    """The object without the test's own bookkeeping key."""
    return {k: v for k, v in obj.items() if k != "__template__"}


def by_kind(objects: Manifests, kind: str) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] == kind]


def one(objects: Manifests, kind: str) -> dict[str, Any]:
    found = by_kind(objects, kind)
    assert len(found) == 1, f"expected one {kind}, got {len(found)}"
    return found[0]


def gateway_pod_spec(objects: Manifests) -> dict[str, Any]:
    spec: dict[str, Any] = one(objects, "Deployment")["spec"]["template"]["spec"]
    return spec


def container(objects: Manifests) -> dict[str, Any]:
    containers = gateway_pod_spec(objects)["containers"]
    assert [c["name"] for c in containers] == ["gateway"]
    first: dict[str, Any] = containers[0]
    return first


GRAFANA_VARIABLE = re.compile(r"\$\{?(\w+)(?::\w+)?\}?")


def substitute_grafana_variables(expr: str) -> str:
    """Make a Grafana query plain PromQL: intervals become 5m, others a literal."""

    def repl(match: re.Match[str]) -> str:
        return "5m" if match.group(1).startswith("__") else "x"

    return GRAFANA_VARIABLE.sub(repl, expr)


def policy_of(objects: Manifests) -> dict[str, Any]:
    """The policy held by the chart's policy ConfigMap, parsed."""
    (configmap,) = [c for c in by_kind(objects, "ConfigMap") if "gateway.yaml" in c["data"]]
    policy: dict[str, Any] = yaml.safe_load(configmap["data"]["gateway.yaml"])
    return policy
