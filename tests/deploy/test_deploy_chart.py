"""The Helm chart: lint, Kubernetes schema validity, and the behaviour promised
by its values (security, probes, credentials as files, Redis guard)."""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import helm_python as helm
import jsonschema
import kubernetes_validate
import pytest
import yaml
from deploy_support import (
    ALERTS,
    CHART,
    DASHBOARD,
    KUBE_VERSION,
    NAMESPACE,
    RELEASE,
    REPO,
    Manifests,
    by_kind,
    container,
    gateway_pod_spec,
    load_values_file,
    one,
    policy_of,
    production_values,
    strip_meta,
)

Render = Callable[[dict[str, Any] | None], Manifests]

WITH_SECRET = {"credentials": {"existingSecret": "reusely-credentials"}}
WITH_INGRESS = {
    "ingress": {
        "enabled": True,
        "className": "nginx",
        "annotations": {"cert-manager.io/cluster-issuer": "letsencrypt"},
        "hosts": [
            {
                "host": "trade-in.shop.example.com",
                "paths": [
                    {"path": "/api/v2/public/catalog", "pathType": "Prefix"},
                    {"path": "/api/v3/public/offer/mail-in", "pathType": "Exact"},
                ],
            }
        ],
        "tls": [{"secretName": "trade-in-tls", "hosts": ["trade-in.shop.example.com"]}],
    }
}
VARIANTS = {
    "default": None,
    "with-secret": WITH_SECRET,
    "production": production_values(),
    "ingress": WITH_INGRESS,
}
LIMIT_KEY_SECRET = f"{RELEASE}-reusely-gateway-limit-key"
CHART_LIMIT_KEY_FILE = "/var/run/secrets/reusely-limit-key/limit-key-secret"
GATEWAY_DRAIN_SECONDS = 30
REDIS_MESSAGE = "needs a shared Redis for rate limits: set redis.url or redis.existingSecret"

# Subsets of the Prometheus Operator CRDs (monitoring.coreos.com/v1) covering
# the fields this chart writes; unknown fields are refused, like the API
# server's structural schema would prune or reject them.
_LABELS = {"type": "object", "additionalProperties": {"type": "string"}}
_METADATA = {
    "type": "object",
    "required": ["name", "labels"],
    "properties": {"name": {"type": "string"}, "labels": _LABELS},
}
CRD_SCHEMAS: dict[str, dict[str, Any]] = {
    "ServiceMonitor": {
        "type": "object",
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "properties": {
            "apiVersion": {"const": "monitoring.coreos.com/v1"},
            "metadata": _METADATA,
            "spec": {
                "type": "object",
                "additionalProperties": False,
                "required": ["selector", "endpoints"],
                "properties": {
                    "jobLabel": {"type": "string"},
                    "selector": {
                        "type": "object",
                        "additionalProperties": False,
                        "properties": {"matchLabels": _LABELS},
                    },
                    "endpoints": {
                        "type": "array",
                        "minItems": 1,
                        "items": {
                            "type": "object",
                            "additionalProperties": False,
                            "properties": {
                                "port": {"type": "string"},
                                "path": {"type": "string"},
                                "interval": {"type": "string", "pattern": "^[0-9]+(ms|s|m|h)$"},
                                "scrapeTimeout": {
                                    "type": "string",
                                    "pattern": "^[0-9]+(ms|s|m|h)$",
                                },
                            },
                        },
                    },
                },
            },
        },
    },
    "PrometheusRule": {
        "type": "object",
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "properties": {
            "apiVersion": {"const": "monitoring.coreos.com/v1"},
            "metadata": _METADATA,
            "spec": {
                "type": "object",
                "additionalProperties": False,
                "required": ["groups"],
                "properties": {
                    "groups": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "additionalProperties": False,
                            "required": ["name", "rules"],
                            "properties": {
                                "name": {"type": "string"},
                                "interval": {"type": "string"},
                                "rules": {
                                    "type": "array",
                                    "items": {
                                        "type": "object",
                                        "additionalProperties": False,
                                        "required": ["expr"],
                                        "properties": {
                                            "alert": {"type": "string"},
                                            "record": {"type": "string"},
                                            "expr": {"type": "string"},
                                            "for": {"type": "string"},
                                            "labels": _LABELS,
                                            "annotations": _LABELS,
                                        },
                                    },
                                },
                            },
                        },
                    }
                },
            },
        },
    },
}


def env_of(objects: Manifests) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in container(objects)["env"]}


def checksum(objects: Manifests) -> str:
    annotations = one(objects, "Deployment")["spec"]["template"]["metadata"]["annotations"]
    value: str = annotations["checksum/config"]
    return value


# --- lint and schema validity ---------------------------------------------------------


@pytest.mark.parametrize("values_file", [None, "values-production.yaml"])
def test_chart_passes_strict_helm_lint(values_file: str | None) -> None:
    values = load_values_file(values_file) if values_file else None
    report = helm.lint(
        CHART, values, strict=True, namespace=NAMESPACE, kube_version=f"v{KUBE_VERSION}"
    )
    assert report["total_charts_linted"] == 1
    assert report["errors"] == []
    # Severity 1 is informational ("icon is recommended"); 2 warning, 3 error.
    assert [m for m in report["messages"] if m["severity"] >= 2] == []


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_every_rendered_object_is_valid_for_kubernetes(render: Render, variant: str) -> None:
    objects = render(VARIANTS[variant])
    assert objects
    for obj in objects:
        body = strip_meta(obj)
        if obj["kind"] in CRD_SCHEMAS:
            jsonschema.validate(body, CRD_SCHEMAS[obj["kind"]])
            continue
        try:
            kubernetes_validate.validate(body, KUBE_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            path = ".".join(str(p) for p in exc.path)
            pytest.fail(f"{obj['__template__']}: {obj['kind']} {path}: {exc.message}")


def test_default_and_production_render_the_expected_objects(render: Render) -> None:
    default = sorted(o["kind"] for o in render(None))
    assert default == ["ConfigMap", "Deployment", "Pod", "Secret", "Service", "ServiceAccount"]
    production = sorted(o["kind"] for o in render(production_values()))
    assert production == [
        "ConfigMap",
        "ConfigMap",
        "Deployment",
        "HorizontalPodAutoscaler",
        "NetworkPolicy",
        "Pod",
        "PodDisruptionBudget",
        "PrometheusRule",
        "Service",
        "ServiceAccount",
        "ServiceMonitor",
    ]


def test_values_files_satisfy_the_values_schema(chart: helm.Chart) -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    jsonschema.Draft7Validator.check_schema(schema)
    assert schema["additionalProperties"] is False
    defaults = load_values_file("values.yaml")
    jsonschema.validate(defaults, schema)
    # An overlay is checked as Helm checks it: merged over the defaults.
    jsonschema.validate(chart.merge_values(production_values()), schema)
    assert set(defaults) <= set(schema["properties"])


# --- names and labels ----------------------------------------------------------------


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_objects_carry_the_standard_labels(render: Render, variant: str) -> None:
    selector = {"app.kubernetes.io/name": "reusely-gateway", "app.kubernetes.io/instance": RELEASE}
    objects = render(VARIANTS[variant])
    for obj in objects:
        labels = obj["metadata"]["labels"]
        assert labels.items() >= selector.items(), obj["__template__"]
        assert labels["app.kubernetes.io/managed-by"] == "Helm"
        assert labels["app.kubernetes.io/version"] == "0.1.0"
        assert labels["helm.sh/chart"] == "reusely-gateway-0.1.0"
    deployment = one(objects, "Deployment")
    assert deployment["spec"]["selector"]["matchLabels"] == selector
    assert deployment["spec"]["template"]["metadata"]["labels"].items() >= selector.items()
    assert one(objects, "Service")["spec"]["selector"] == selector


def test_names_and_labels_are_defined_only_in_helpers() -> None:
    for template in (CHART / "templates").rglob("*.yaml"):
        text = template.read_text()
        assert "app.kubernetes.io/" not in text, template.name
        assert "define " not in text, template.name


# --- the Deployment ------------------------------------------------------------------


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_pod_runs_with_a_strict_security_context(render: Render, variant: str) -> None:
    objects = render(VARIANTS[variant])
    pod = gateway_pod_spec(objects)
    assert pod["securityContext"] == {
        "runAsNonRoot": True,
        "runAsUser": 10001,
        "runAsGroup": 10001,
        "fsGroup": 10001,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    assert pod["automountServiceAccountToken"] is False
    security = container(objects)["securityContext"]
    assert security["allowPrivilegeEscalation"] is False
    assert security["readOnlyRootFilesystem"] is True
    assert security["runAsNonRoot"] is True
    assert security["capabilities"] == {"drop": ["ALL"]}
    assert "add" not in security["capabilities"]
    for test_pod in by_kind(objects, "Pod"):
        assert test_pod["spec"]["securityContext"]["runAsNonRoot"] is True
        assert test_pod["spec"]["containers"][0]["securityContext"]["readOnlyRootFilesystem"]


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_container_has_named_ports_and_probes(render: Render, variant: str) -> None:
    objects = render(VARIANTS[variant])
    gateway = container(objects)
    assert gateway["ports"] == [
        {"name": "http", "containerPort": 8080, "protocol": "TCP"},
        {"name": "metrics", "containerPort": 9464, "protocol": "TCP"},
    ]
    assert gateway["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert gateway["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert gateway["startupProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    startup = gateway["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 30
    assert gateway["command"] == [
        "reusely-gateway",
        "serve",
        "--bind",
        "0.0.0.0:8080",
        "--metrics-bind",
        "0.0.0.0:9464",
    ]
    assert gateway["resources"]["requests"]["cpu"]
    assert gateway["resources"]["limits"]["memory"]
    service_ports = {p["name"]: p for p in one(objects, "Service")["spec"]["ports"]}
    assert service_ports["http"]["targetPort"] == "http"
    assert service_ports["metrics"]["targetPort"] == "metrics"


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_termination_grace_outlasts_the_drain(render: Render, variant: str) -> None:
    objects = render(VARIANTS[variant])
    pod = gateway_pod_spec(objects)
    pre_stop = container(objects)["lifecycle"]["preStop"]["sleep"]["seconds"]
    assert pod["terminationGracePeriodSeconds"] == 45
    assert pod["terminationGracePeriodSeconds"] > GATEWAY_DRAIN_SECONDS + pre_stop


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_only_tmp_and_the_metrics_dir_are_writable(render: Render, variant: str) -> None:
    objects = render(VARIANTS[variant])
    pod = gateway_pod_spec(objects)
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["mountPath"]: m for m in container(objects)["volumeMounts"]}
    writable = {path for path, m in mounts.items() if not m.get("readOnly")}
    assert writable == {"/tmp", "/tmp/metrics"}
    assert "emptyDir" in volumes[mounts["/tmp"]["name"]]
    assert "emptyDir" in volumes[mounts["/tmp/metrics"]["name"]]
    assert env_of(objects)["PROMETHEUS_MULTIPROC_DIR"]["value"] == "/tmp/metrics"


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_policy_comes_from_the_configmap(chart: helm.Chart, render: Render, variant: str) -> None:
    values = VARIANTS[variant]
    objects = render(values)
    configmap = next(o for o in by_kind(objects, "ConfigMap") if "gateway.yaml" in o["data"])
    env = env_of(objects)
    mounts = {m["name"]: m for m in container(objects)["volumeMounts"]}
    volumes = {v["name"]: v for v in gateway_pod_spec(objects)["volumes"]}
    config_volume = next(n for n, v in volumes.items() if "configMap" in v)
    assert volumes[config_volume]["configMap"]["name"] == configmap["metadata"]["name"]
    assert env["GATEWAY_CONFIG"]["value"] == mounts[config_volume]["mountPath"] + "/gateway.yaml"
    policy = yaml.safe_load(configmap["data"]["gateway.yaml"])
    assert policy == chart.merge_values(values)["policy"]


def test_default_policy_holds_the_reusely_routes(render: Render) -> None:
    policy = policy_of(render(None))
    routes = {r["name"]: r for r in policy["routes"]}
    assert list(routes) == ["catalog", "checkout-mail-in", "offer-from-lead", "admin"]
    assert routes["catalog"]["path"] == "/api/v2/public/catalog/{rest:path}"
    assert routes["catalog"]["methods"] == ["GET"]
    assert routes["catalog"]["access"] == "public"
    assert routes["catalog"]["credentials"] == ["api_key", "tenant_id"]
    mail_in = routes["checkout-mail-in"]
    assert (mail_in["path"], mail_in["methods"], mail_in["access"]) == (
        "/api/v3/public/offer/mail-in",
        ["POST"],
        "public",
    )
    assert mail_in["limits"] == [
        {"per": "body:email", "rate": "5/hour"},
        {"per": "body:phone", "rate": "5/hour"},
        {"per": "ip", "rate": "30/hour"},
    ]
    assert routes["admin"]["path"] == "/api/v2/admin/{rest:path}"
    assert routes["admin"]["access"] == "internal"
    assert routes["admin"]["credentials"] == ["api_key", "tenant_id", "secret_key"]


def test_default_policy_matches_the_image_default(render: Render) -> None:
    chart_policy = policy_of(render(None))
    image_policy = yaml.safe_load((REPO / "config" / "gateway.yaml").read_text())
    assert chart_policy["routes"] == image_policy["routes"]
    assert chart_policy["clients"] == image_policy["clients"]
    for section in ("limits", "cors"):
        assert chart_policy[section].items() <= image_policy[section].items(), section


@pytest.mark.parametrize("variant", ["default", "production"])
def test_rendered_policy_passes_the_gateways_check_config(
    render: Render, variant: str, tmp_path: Path
) -> None:
    policy_file = tmp_path / "gateway.yaml"
    policy_file.write_text(yaml.safe_dump(policy_of(render(VARIANTS[variant]))))
    cli = Path(sys.executable).with_name("reusely-gateway")
    result = subprocess.run(
        [str(cli), "check-config", "--config", str(policy_file)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={"PATH": os.environ.get("PATH", ""), "REUSELY_API_KEY": "k", "REUSELY_TENANT_ID": "t"},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "routes (4)" in result.stdout


def test_config_checksum_rolls_pods_only_when_the_policy_changes(
    chart: helm.Chart, render: Render
) -> None:
    base = render(None)
    rendered = chart.render({}, name=RELEASE, namespace=NAMESPACE)
    configmap_text = rendered["reusely-gateway/templates/configmap.yaml"]
    assert checksum(base) == hashlib.sha256(configmap_text.encode()).hexdigest()
    assert checksum(render({"logLevel": "debug"})) == checksum(base)
    changed = render({"policy": {"limits": {"on_error": "deny"}}})
    assert checksum(changed) != checksum(base)


# --- credentials -----------------------------------------------------------------------

CREDENTIAL_ENV = {
    "REUSELY_API_KEY",
    "REUSELY_TENANT_ID",
    "REUSELY_SECRET_KEY",
    "REUSELY_MARKETPLACE_KEY",
    "GATEWAY_LIMIT_KEY_SECRET",
}


def test_credentials_are_mounted_files_from_the_existing_secret(render: Render) -> None:
    objects = render(WITH_SECRET)
    env = env_of(objects)
    assert {name: e["value"] for name, e in env.items() if name.endswith("_FILE")} == {
        "REUSELY_API_KEY_FILE": "/var/run/secrets/reusely/api-key",
        "REUSELY_TENANT_ID_FILE": "/var/run/secrets/reusely/tenant-id",
        "REUSELY_SECRET_KEY_FILE": "/var/run/secrets/reusely/secret-key",
        "GATEWAY_LIMIT_KEY_SECRET_FILE": CHART_LIMIT_KEY_FILE,
    }
    assert not CREDENTIAL_ENV & set(env), "credentials must come as files only"
    volumes = {v["name"]: v for v in gateway_pod_spec(objects)["volumes"]}
    secret = volumes["credentials"]["secret"]
    assert secret["secretName"] == "reusely-credentials"
    assert [i["key"] for i in secret["items"]] == ["api-key", "tenant-id", "secret-key"]
    mount = next(m for m in container(objects)["volumeMounts"] if m["name"] == "credentials")
    assert mount == {
        "name": "credentials",
        "mountPath": "/var/run/secrets/reusely",
        "readOnly": True,
    }


def test_credential_key_names_are_configurable(render: Render) -> None:
    values = {
        "credentials": {
            "existingSecret": "creds",
            "mountPath": "/run/reusely",
            "keys": {"apiKey": "API_KEY", "secretKey": "", "limitKeySecret": "hmac"},
        }
    }
    env = env_of(render(values))
    files = {name: e["value"] for name, e in env.items() if name.endswith("_FILE")}
    assert files == {
        "REUSELY_API_KEY_FILE": "/run/reusely/API_KEY",
        "REUSELY_TENANT_ID_FILE": "/run/reusely/tenant-id",
        "GATEWAY_LIMIT_KEY_SECRET_FILE": "/run/reusely/hmac",
    }


def test_without_a_secret_no_credential_is_wired_but_the_limit_key_is(render: Render) -> None:
    objects = render(None)
    files = [name for name in env_of(objects) if name.endswith("_FILE")]
    assert files == ["GATEWAY_LIMIT_KEY_SECRET_FILE"]
    assert "credentials" not in {v["name"] for v in gateway_pod_spec(objects)["volumes"]}


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_no_secret_value_reaches_a_rendered_object(render: Render, variant: str) -> None:
    objects = render(VARIANTS[variant])
    # The only Secret is the chart's own random limit key, made when the user gives none.
    assert [s["metadata"]["name"] for s in by_kind(objects, "Secret")] in ([], [LIMIT_KEY_SECRET])
    placeholders = [
        line.split("=", 1)[1]
        for line in (REPO / ".env.example").read_text().splitlines()
        if "=" in line and not line.startswith("#")
    ]
    assert placeholders
    dumped = yaml.safe_dump_all([strip_meta(o) for o in objects])
    for placeholder in placeholders:
        assert placeholder not in dumped
    for configmap in by_kind(objects, "ConfigMap"):
        text = json.dumps(configmap["data"]).lower()
        for word in ("api_key=", "secret_key=", "x-api-key", "x-secret-key", "password"):
            assert word not in text
    assert not CREDENTIAL_ENV & set(env_of(objects))


@pytest.mark.parametrize(
    "values",
    [
        pytest.param({"apiKey": "sk_live_123"}, id="top-level-key"),
        pytest.param({"credentials": {"apiKey": "sk_live_123"}}, id="credentials-value"),
        pytest.param({"credentials": {"keys": {"apiKey": "a b"}}}, id="key-name-not-a-name"),
        pytest.param(
            {"extraEnv": [{"name": "REUSELY_API_KEY", "value": "sk_live_123"}]},
            id="extra-env-credential",
        ),
        pytest.param(
            {"extraEnv": [{"name": "GATEWAY_LIMIT_KEY_SECRET", "value": "x"}]},
            id="extra-env-hmac",
        ),
        pytest.param({"redis": {"url": "redis://:hunter2@redis:6379/0"}}, id="redis-password"),
        pytest.param({"policy": {"routes": [{"name": "a", "path": "/a", "x": 1}]}}, id="policy"),
        pytest.param({"replicaCuont": 3}, id="typo"),
    ],
)
def test_schema_refuses_secret_values_and_unknown_keys(
    chart: helm.Chart, values: dict[str, Any]
) -> None:
    with pytest.raises(helm.HelmValuesError):
        chart.validate_schema(values)


# --- Redis guard -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "values",
    [
        pytest.param({"replicaCount": 3}, id="replicas"),
        pytest.param({"autoscaling": {"enabled": True}}, id="hpa"),
        pytest.param({"workers": 2}, id="workers"),
    ],
)
def test_scaling_out_without_redis_fails_with_a_clear_message(
    chart: helm.Chart, values: dict[str, Any]
) -> None:
    with pytest.raises(helm.HelmRenderError, match=re.escape(REDIS_MESSAGE)):
        chart.render(values, name=RELEASE, namespace=NAMESPACE)


def test_redis_url_may_come_from_an_existing_secret(render: Render) -> None:
    values = {"replicaCount": 3, "redis": {"existingSecret": "redis-auth"}}
    env = env_of(render(values))
    assert env["GATEWAY_REDIS_URL"] == {
        "name": "GATEWAY_REDIS_URL",
        "valueFrom": {"secretKeyRef": {"name": "redis-auth", "key": "redis-url"}},
    }
    plain = env_of(render({"replicaCount": 3, "redis": {"url": "redis://redis:6379/0"}}))
    assert plain["GATEWAY_REDIS_URL"]["value"] == "redis://redis:6379/0"


def test_redis_url_and_secret_together_are_refused(chart: helm.Chart) -> None:
    values = {"redis": {"url": "redis://redis:6379", "existingSecret": "redis-auth"}}
    with pytest.raises(helm.HelmRenderError, match=re.escape("set only one of redis.url")):
        chart.render(values, name=RELEASE, namespace=NAMESPACE)


# --- production overlay ----------------------------------------------------------------


def test_production_runs_three_autoscaled_replicas_on_sentinel(render: Render) -> None:
    objects = render(production_values())
    assert "replicas" not in one(objects, "Deployment")["spec"]
    hpa = one(objects, "HorizontalPodAutoscaler")
    assert hpa["spec"]["minReplicas"] >= 3
    assert hpa["spec"]["scaleTargetRef"]["name"] == one(objects, "Deployment")["metadata"]["name"]
    assert one(objects, "PodDisruptionBudget")["spec"]["maxUnavailable"] == 1
    env = env_of(objects)
    assert env["GATEWAY_REDIS_URL"]["value"] == "redis+sentinel://redis-sentinel:26379/mymaster"
    assert env["GATEWAY_WORKERS"]["value"] == "2"
    assert "GATEWAY_LIMIT_KEY_SECRET_FILE" in env


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_pods_spread_across_nodes(render: Render, variant: str) -> None:
    objects = render(VARIANTS[variant])
    selector = one(objects, "Deployment")["spec"]["selector"]["matchLabels"]
    constraints = gateway_pod_spec(objects)["topologySpreadConstraints"]
    assert "kubernetes.io/hostname" in {c["topologyKey"] for c in constraints}
    for constraint in constraints:
        assert constraint["labelSelector"] == {"matchLabels": selector}


def test_service_monitor_scrapes_the_metrics_port_as_the_alerts_expect(render: Render) -> None:
    objects = render(production_values())
    monitor = one(objects, "ServiceMonitor")
    service = one(objects, "Service")
    assert monitor["spec"]["endpoints"][0]["port"] == "metrics"
    assert monitor["spec"]["endpoints"][0]["path"] == "/metrics"
    selector = monitor["spec"]["selector"]["matchLabels"]
    assert service["metadata"]["labels"].items() >= selector.items()
    # The alert rules and dashboard select job="reusely-gateway".
    assert service["metadata"]["labels"][monitor["spec"]["jobLabel"]] == "reusely-gateway"
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"


def test_prometheus_rule_is_the_shared_alerts_file(render: Render) -> None:
    rule = one(render(production_values()), "PrometheusRule")
    assert rule["spec"] == yaml.safe_load(ALERTS.read_text())


def test_dashboard_configmap_ships_the_dashboard_for_the_grafana_sidecar(render: Render) -> None:
    configmaps = by_kind(render(production_values()), "ConfigMap")
    dashboard = next(c for c in configmaps if c["metadata"]["name"].endswith("-dashboard"))
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    (content,) = dashboard["data"].values()
    assert json.loads(content) == json.loads(DASHBOARD.read_text())


def test_network_policy_opens_only_what_the_gateway_needs(render: Render) -> None:
    policy = one(render(production_values()), "NetworkPolicy")["spec"]
    assert policy["policyTypes"] == ["Ingress", "Egress"]
    http_rule, metrics_rule = policy["ingress"]
    assert http_rule == {"ports": [{"port": "http", "protocol": "TCP"}]}
    assert metrics_rule["ports"] == [{"port": "metrics", "protocol": "TCP"}]
    assert metrics_rule["from"] == [
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}
    ]
    egress_ports = {(p["port"], p["protocol"]) for rule in policy["egress"] for p in rule["ports"]}
    assert egress_ports == {
        (53, "UDP"),
        (53, "TCP"),
        (6379, "TCP"),
        (26379, "TCP"),
        (443, "TCP"),
    }
    assert all("to" not in rule for rule in policy["egress"])


def test_chart_readme_documents_every_top_level_value() -> None:
    readme = (CHART / "README.md").read_text()
    for key in load_values_file("values.yaml"):
        assert f"`{key}" in readme, key


def test_kubernetes_validation_rejects_an_unknown_field(render: Render) -> None:
    deployment = strip_meta(one(render(None), "Deployment"))
    deployment["spec"]["template"]["spec"]["containers"][0]["securityContxt"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBE_VERSION, strict=True)
