"""The chart's optional Ingress and its always-dedicated limit key Secret."""

from __future__ import annotations

import base64
import re
from collections.abc import Callable
from typing import Any

import helm_python as helm
import kubernetes_validate
import pytest
import yaml
from deploy_support import (
    KUBE_VERSION,
    NAMESPACE,
    RELEASE,
    Manifests,
    by_kind,
    container,
    gateway_pod_spec,
    one,
    parse_manifests,
    production_values,
    strip_meta,
)
from kube_api import kube_api

Render = Callable[[dict[str, Any] | None], Manifests]

FULLNAME = f"{RELEASE}-reusely-gateway"
LIMIT_KEY_SECRET = f"{FULLNAME}-limit-key"
CHART_LIMIT_KEY_DIR = "/var/run/secrets/reusely-limit-key"
INGRESS = {
    "enabled": True,
    "className": "nginx",
    "annotations": {"cert-manager.io/cluster-issuer": "letsencrypt"},
    "hosts": [{"host": "trade-in.shop.example.com",
               "paths": [{"path": "/", "pathType": "Prefix"}]}],
    "tls": [{"secretName": "trade-in-tls", "hosts": ["trade-in.shop.example.com"]}],
}


def env_of(objects: Manifests) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in container(objects)["env"]}


def limit_key_value(objects: Manifests) -> bytes:
    secret = one(objects, "Secret")
    assert secret["metadata"]["name"] == LIMIT_KEY_SECRET
    return base64.b64decode(secret["data"]["limit-key-secret"])


# --- Ingress ----------------------------------------------------------------------------


def test_no_ingress_unless_enabled(render: Render) -> None:
    assert not by_kind(render(None), "Ingress")
    assert not by_kind(render(production_values()), "Ingress")


def test_ingress_routes_the_proxy_port_only_with_tls_from_values(render: Render) -> None:
    objects = render({"ingress": INGRESS})
    ingress = one(objects, "Ingress")
    kubernetes_validate.validate(strip_meta(ingress), KUBE_VERSION, strict=True)
    spec = ingress["spec"]
    assert spec["ingressClassName"] == "nginx"
    assert ingress["metadata"]["annotations"] == INGRESS["annotations"]
    assert spec["tls"] == [{"secretName": "trade-in-tls", "hosts": ["trade-in.shop.example.com"]}]
    (rule,) = spec["rules"]
    assert rule["host"] == "trade-in.shop.example.com"
    (path,) = rule["http"]["paths"]
    assert (path["path"], path["pathType"]) == ("/", "Prefix")
    assert path["backend"] == {"service": {"name": FULLNAME, "port": {"name": "http"}}}
    service_ports = {p["name"] for p in one(objects, "Service")["spec"]["ports"]}
    assert "http" in service_ports
    assert "metrics" not in yaml.safe_dump(spec)


def test_ingress_can_expose_just_the_public_paths_on_several_hosts(render: Render) -> None:
    public = [{"path": "/api/v2/public/catalog", "pathType": "Prefix"},
              {"path": "/api/v3/public/offer/mail-in", "pathType": "Exact"}]
    values = {"ingress": {"enabled": True, "hosts": [
        {"host": "a.example.com", "paths": public}, {"host": "b.example.com", "paths": public}]}}
    ingress = one(render(values), "Ingress")
    assert "ingressClassName" not in ingress["spec"]
    assert "tls" not in ingress["spec"]
    assert "annotations" not in ingress["metadata"]
    for rule in ingress["spec"]["rules"]:
        assert [p["path"] for p in rule["http"]["paths"]] == [p["path"] for p in public]
        for path in rule["http"]["paths"]:
            assert path["backend"]["service"]["port"] == {"name": "http"}


@pytest.mark.parametrize(
    "ingress",
    [
        pytest.param({"servicePort": "metrics"}, id="port-is-not-a-value"),
        pytest.param({"hosts": [{"host": "a.example.com", "paths": [
            {"path": "/", "pathType": "Prefix", "port": 9464}]}]}, id="path-port"),
        pytest.param({"hosts": [{"host": "a.example.com", "paths": [
            {"path": "metrics", "pathType": "Prefix"}]}]}, id="relative-path"),
        pytest.param({"hosts": [{"host": "a.example.com", "paths": [
            {"path": "/", "pathType": "Any"}]}]}, id="path-type"),
        pytest.param({"hosts": [{"host": "Not A Host", "paths": [
            {"path": "/", "pathType": "Prefix"}]}]}, id="host"),
        pytest.param({"tls": [{"hosts": ["a.example.com"]}]}, id="tls-without-secret"),
        pytest.param({"enabled": "yes"}, id="enabled-not-boolean"),
    ],
)
def test_schema_refuses_bad_ingress_values(chart: helm.Chart, ingress: dict[str, Any]) -> None:
    with pytest.raises(helm.HelmValuesError):
        chart.validate_schema({"ingress": ingress})


def test_notes_give_the_public_url_and_warn_about_trusted_proxies(chart: helm.Chart) -> None:
    notes = chart.render({"ingress": INGRESS}, name=RELEASE, namespace=NAMESPACE)[
        "reusely-gateway/templates/NOTES.txt"]
    assert "https://trade-in.shop.example.com" in notes
    assert "trusted_proxies" in notes
    trusted = {"ingress": INGRESS, "policy": {"limits": {"trusted_proxies": ["10.0.0.0/8"]}}}
    notes = chart.render(trusted, name=RELEASE, namespace=NAMESPACE)[
        "reusely-gateway/templates/NOTES.txt"]
    assert "trusted_proxies" not in notes


# --- the limit key: always a dedicated secret ------------------------------------------


@pytest.mark.parametrize(
    "values",
    [None, {"credentials": {"existingSecret": "reusely-credentials"}},
     {"credentials": {"keys": {"limitKeySecret": "hmac"}}}],  # a key name without a Secret
    ids=["default", "secret-without-limit-key", "limit-key-name-without-secret"],
)
def test_without_a_limit_key_of_its_own_the_chart_makes_and_mounts_one(
    render: Render, values: dict[str, Any] | None
) -> None:
    objects = render(values)
    kubernetes_validate.validate(strip_meta(one(objects, "Secret")), KUBE_VERSION, strict=True)
    key = limit_key_value(objects)
    assert re.fullmatch(rb"[A-Za-z0-9]{48}", key)
    assert env_of(objects)["GATEWAY_LIMIT_KEY_SECRET_FILE"]["value"] == (
        f"{CHART_LIMIT_KEY_DIR}/limit-key-secret")
    volumes = {v["name"]: v for v in gateway_pod_spec(objects)["volumes"]}
    assert volumes["limit-key"]["secret"]["secretName"] == LIMIT_KEY_SECRET
    mounts = {m["name"]: m for m in container(objects)["volumeMounts"]}
    assert mounts["limit-key"] == {"name": "limit-key", "mountPath": CHART_LIMIT_KEY_DIR,
                                   "readOnly": True}


def test_a_limit_key_in_the_users_secret_is_used_and_the_chart_makes_none(
    render: Render,
) -> None:
    objects = render(production_values())
    assert not by_kind(objects, "Secret")
    assert env_of(objects)["GATEWAY_LIMIT_KEY_SECRET_FILE"]["value"] == (
        "/var/run/secrets/reusely/limit-key-secret")
    volumes = {v["name"]: v for v in gateway_pod_spec(objects)["volumes"]}
    assert "limit-key" not in volumes
    items = [i["key"] for i in volumes["credentials"]["secret"]["items"]]
    assert items == ["api-key", "tenant-id", "secret-key", "limit-key-secret"]


def test_a_fresh_install_gets_a_new_random_key(chart: helm.Chart) -> None:
    keys = {limit_key_value(parse_manifests(chart.render({}, name=RELEASE, namespace=NAMESPACE)))
            for _ in range(3)}
    assert len(keys) == 3


def test_an_upgrade_keeps_the_key_already_in_the_cluster(chart: helm.Chart) -> None:
    kept = base64.b64encode(b"the-key-from-the-first-install-0123456789").decode()
    secrets = {(NAMESPACE, LIMIT_KEY_SECRET): {"limit-key-secret": kept}}
    with kube_api(secrets) as api, helm.Config(kubeconfig_content=api.kubeconfig,
                                               namespace=NAMESPACE) as config:
        for _ in range(2):
            rendered = config.render(chart, {}, name=RELEASE, namespace=NAMESPACE,
                                     is_upgrade=True)
            secret = one(parse_manifests(rendered), "Secret")
            assert secret["data"]["limit-key-secret"] == kept
        assert f"/api/v1/namespaces/{NAMESPACE}/secrets/{LIMIT_KEY_SECRET}" in [
            p.split("?")[0] for p in api.paths]
        # Another release in the namespace has its own key.
        other = one(parse_manifests(config.render(chart, {}, name="other", namespace=NAMESPACE,
                                                  is_upgrade=True)), "Secret")
        assert other["data"]["limit-key-secret"] != kept
