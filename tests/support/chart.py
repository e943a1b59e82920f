"""What a `helm` or `kubectl create` command of the docs would install, rendered here.

No cluster: Helm is the helm-python-sdk library, rendering the chart in this
repository with the values a command names (`-f` files merged as Helm merges
them, then `--set`); every object is validated against Kubernetes' schemas
and the policy in the ConfigMap is parsed as the gateway parses it. A `kubectl
create` command is rendered by kubectl itself, with `--dry-run=client`, where
kubectl is installed.
"""

from __future__ import annotations

import copy
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import helm_python as helm
import kubernetes_validate
import pytest
import yaml

from gateway import errors
from gateway.policy import parse_policy, parse_yaml

CHART_PATH = "charts/reusely-gateway"
KUBE_VERSION = "1.33.0"


def deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """Helm's merge of values files: maps merge, anything else replaces."""
    out = copy.deepcopy(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def set_value(values: dict[str, Any], assignment: str) -> None:
    for pair in assignment.split(","):
        path, _, raw = pair.partition("=")
        node = values
        *parents, last = path.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = yaml.safe_load(raw) if raw else ""


@dataclass
class Release:
    name: str
    namespace: str
    objects: list[dict[str, Any]]
    where: str


def render(chart: helm.Chart, words: list[str], root: Path, where: str) -> Release:
    """`helm upgrade --install NAME CHART ...` (or install, template) rendered here."""
    args = [w for w in words[1:] if w not in ("upgrade", "install", "template", "--install")]
    positional: list[str] = []
    values: dict[str, Any] = {}
    namespace = "default"
    i = 0
    while i < len(args):
        word = args[i]
        if word in ("-n", "--namespace"):
            namespace, i = args[i + 1], i + 2
        elif word in ("-f", "--values"):
            loaded = yaml.safe_load((root / args[i + 1]).read_text()) or {}
            values, i = deep_merge(values, loaded), i + 2
        elif word in ("--set", "--set-string"):
            set_value(values, args[i + 1])
            i += 2
        elif word.startswith("-"):
            i += 1
        else:
            positional.append(word)
            i += 1
    assert len(positional) == 2, f"{where}: {' '.join(words)}"
    name, chart_path = positional
    assert chart_path.rstrip("/") == CHART_PATH, f"{where}: {chart_path}"
    try:
        rendered = chart.render(values, name=name, namespace=namespace)
    except helm.HelmError as exc:
        pytest.fail(f"{where}: {' '.join(words)}: {exc}")
    objects = []
    for path, text in sorted(rendered.items()):
        if not path.endswith("NOTES.txt"):
            objects += [doc for doc in yaml.safe_load_all(text) if doc]
    return Release(name, namespace, objects, where)


def check_release(release: Release) -> None:
    for obj in release.objects:
        if obj["apiVersion"].startswith("monitoring.coreos.com/"):
            continue  # the deployment tests check these against the operator's schemas
        try:
            kubernetes_validate.validate(obj, KUBE_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{release.where}: {obj['kind']} {list(exc.path)}: {exc.message}")
    (config,) = [o for o in release.objects if o["kind"] == "ConfigMap"
                 and "gateway.yaml" in o.get("data", {})]
    try:
        parse_policy(parse_yaml(config["data"]["gateway.yaml"], release.where))
    except errors.ConfigError as exc:
        pytest.fail(f"{release.where}: the rendered policy: {exc.problems}")


def secret_of(words: list[str]) -> tuple[str, set[str], list[str]]:
    """(name, keys, files) of `kubectl create secret generic NAME --from-file=K=P ...`."""
    name = words[words.index("generic") + 1]
    keys, files = set(), []
    for word in words:
        if word.startswith("--from-file="):
            key, _, path = word.removeprefix("--from-file=").partition("=")
            keys.add(key)
            files.append(path or key)
        elif word.startswith("--from-literal="):
            keys.add(word.removeprefix("--from-literal=").split("=", 1)[0])
    return name, keys, files


def kubectl_renders(words: list[str], root: Path, files: list[str]) -> dict[str, Any]:
    """kubectl's own rendering of a `kubectl create ...` command (kubectl installed)."""
    for path in files:
        target = root / path
        target.parent.mkdir(parents=True, exist_ok=True)
        if not target.exists():
            target.write_text("placeholder")
    argv = [w for w in words if w not in ("-o", "yaml") and not w.startswith("--dry-run")]
    result = subprocess.run([*argv, "--dry-run=client", "-o", "yaml"], cwd=root, text=True,
                            capture_output=True, check=False, timeout=60,
                            env={**os.environ, "KUBECONFIG": str(root / "no-kubeconfig")})
    assert result.returncode == 0, result.stderr
    loaded: dict[str, Any] = yaml.safe_load(result.stdout)
    return loaded
