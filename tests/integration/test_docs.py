"""`make docs-check`: the pages' commands work as written, and their links resolve.

- Every `sh` block of README.md, ARCHITECTURE.md, docs/ and the chart's README
  runs, in order, in one shell per page, against `make run` started as a
  reader starts it (on free ports, which the commands' addresses are rewritten
  to); each `# -> text` line must appear in its block's output.
- Blocks that need what a test machine lacks (a terminal of their own, a Reusely
  account, a cluster, Docker) are syntax-checked, and what can be checked of
  them is: Helm commands render the chart in this repository with the values
  they name (tests/support/chart.py), and the Secret that `kubectl create
  secret` makes holds every key the Deployment mounts (compared with kubectl's
  own `--dry-run=client` rendering where kubectl is installed); `docker build`
  passes only build arguments the Dockerfile declares.
- Policy blocks are policies the gateway accepts; values blocks render.
- Every relative link resolves, anchors included.

The names the pages use are checked against the code in test_docs_names.py.
How a block says how it is checked: tests/support/docs.py.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import helm_python as helm
import pytest
import redis
import yaml

from gateway import errors
from gateway.policy import parse_policy, parse_yaml
from tests.conftest import REDIS_URL
from tests.support.chart import (
    CHART_PATH,
    Release,
    check_release,
    kubectl_renders,
    render,
    secret_of,
)
from tests.support.docs import (
    NEEDS,
    PAGES,
    Block,
    ShellSession,
    anchors,
    blocks,
    commands,
    links,
    scratch,
)
from tests.support.gateway import ROOT
from tests.support.scripts import ScriptRun, loopback_bind, script_env

CHART = ROOT / CHART_PATH
LANGUAGES = {"sh", "yaml", "json", "text", "html", "js"}
# The addresses the pages use, as `make run` binds them by default.
GATEWAY, METRICS, SANDBOX = "127.0.0.1:8080", "127.0.0.1:9464", "127.0.0.1:8081"
PAGE_REDIS = "redis://127.0.0.1:6379/0"


def page_id(page: Path) -> str:
    return str(page.relative_to(ROOT))


def all_blocks() -> list[Block]:
    return [b for page in PAGES for b in blocks(page)]


# -- the stacks the commands run against ---------------------------------------------


@dataclass
class Stack:
    run: ScriptRun
    gateway: str
    metrics: str
    sandbox: str
    token: str
    redis_url: str | None = None

    def localise(self, text: str) -> str:
        """The pages' default addresses rewritten to this stack's free ports."""
        text = (text.replace(GATEWAY, self.gateway).replace(METRICS, self.metrics)
                .replace(SANDBOX, self.sandbox))
        return text.replace(PAGE_REDIS, self.redis_url) if self.redis_url else text


def start_stack(logs: Path, **extra: str) -> Stack:
    gateway, metrics, sandbox = loopback_bind(), loopback_bind(), loopback_bind()
    run = ScriptRun("run", script_env(GATEWAY_BIND=gateway, GATEWAY_METRICS_BIND=metrics,
                                      SANDBOX_BIND=sandbox, **extra), logs)
    try:
        text = run.wait_for_output("made for this run only:")
        deadline = time.monotonic() + 10
        while (match := re.search(r"made for this run only:\n\s+(\S+)\n", text)) is None:
            assert time.monotonic() < deadline, text
            time.sleep(0.1)
            text = run.output()
    except BaseException:
        run.stop()
        raise
    return Stack(run, gateway, metrics, sandbox, match[1], extra.get("GATEWAY_REDIS_URL"))


@pytest.fixture(scope="module")
def memory_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    stack = start_stack(tmp_path_factory.mktemp("docs-memory"))
    yield stack
    stack.run.stop()


@pytest.fixture(scope="module")
def redis_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    client = redis.Redis.from_url(REDIS_URL, socket_timeout=2)
    try:
        client.ping()
    except redis.RedisError as exc:
        pytest.fail(f"the docs' Redis commands need Redis at {REDIS_URL} ({exc})")
    client.flushdb()
    stack = start_stack(tmp_path_factory.mktemp("docs-redis"), GATEWAY_REDIS_URL=REDIS_URL)
    yield stack
    stack.run.stop()
    client.flushdb()
    client.close()


def write_files(page_blocks: list[Block], root: Path) -> None:
    for block in page_blocks:
        name = block.attr("file")
        if name:
            (root / name).write_text(block.text)


RUN_PAGES = [p for p in PAGES if any(b.runs for b in blocks(p))]


@pytest.mark.parametrize("page", RUN_PAGES, ids=page_id)
def test_every_command_of_the_page_runs_as_written(page: Path, tmp_path: Path,
                                                   request: pytest.FixtureRequest) -> None:
    page_blocks = blocks(page)
    root = scratch(tmp_path)
    write_files(page_blocks, root)
    plain: Stack = request.getfixturevalue("memory_stack")
    with_redis: Stack | None = (request.getfixturevalue("redis_stack")
                                if any(b.runs and b.has("redis") for b in page_blocks) else None)
    env = script_env(PATH=f"{Path(sys.prefix) / 'bin'}{os.pathsep}{os.environ['PATH']}",
                     TOKEN=plain.token)
    session = ShellSession(root, env)
    try:
        for block in page_blocks:
            if not block.runs:
                continue
            stack = with_redis if block.has("redis") and with_redis else plain
            try:
                output = session.run(stack.localise(block.text))
            except AssertionError as exc:
                raise AssertionError(f"{block.where}: {exc}") from None
            for expected in block.expected:
                assert stack.localise(expected) in output, (
                    f"{block.where}: {expected!r} is not in the output:\n{output}")
    finally:
        session.close()


# -- what cannot run here: checked as far as it can be ------------------------------


def test_every_block_says_how_it_is_checked_and_parses() -> None:
    for block in all_blocks():
        where = block.where
        assert block.lang in LANGUAGES, f"{where}: say the block's language ({block.lang!r})"
        if block.is_shell:
            needs = block.attr("needs")
            assert set(block.words) <= {"redis", f"needs={needs}"}, (where, block.words)
            assert needs is None or needs in NEEDS, f"{where}: needs={needs}?"
            assert not (needs and block.has("redis")), where
            result = subprocess.run(["bash", "-n"], input=block.text, text=True,
                                    capture_output=True, check=False)
            assert result.returncode == 0, f"{where}: {result.stderr}"
            if needs:
                assert not block.expected, f"{where}: output promised by a block never run"
        elif block.lang == "yaml":
            assert set(block.words) <= {"policy", "values", f"file={block.attr('file')}"}, where
            try:
                yaml.safe_load(block.text)
            except yaml.YAMLError as exc:
                pytest.fail(f"{where}: {exc}")
        elif block.lang == "json":
            try:
                json.loads(block.text)
            except ValueError as exc:
                pytest.fail(f"{where}: {exc}")


def test_every_policy_block_is_a_policy_the_gateway_accepts() -> None:
    found = [b for b in all_blocks() if b.lang == "yaml" and b.has("policy")]
    assert len(found) >= 3
    for block in found:
        try:
            parse_policy(parse_yaml(block.text, block.where))
        except errors.ConfigError as exc:
            pytest.fail(f"{block.where}: {exc.problems}")


CLUSTER_PAGES = [p for p in PAGES if any(b.attr("needs") == "cluster" for b in blocks(p))]


@pytest.mark.parametrize("page", CLUSTER_PAGES, ids=page_id)
def test_the_cluster_commands_install_what_the_chart_renders(page: Path,
                                                             tmp_path: Path) -> None:
    page_blocks = blocks(page)
    root = scratch(tmp_path)
    write_files(page_blocks, root)
    secrets: dict[str, set[str]] = {}
    releases: list[Release] = []
    references: list[tuple[str, str, str]] = []
    kubectl = shutil.which("kubectl")
    with helm.Chart.load(CHART) as chart:
        for block in page_blocks:
            if block.attr("needs") != "cluster":
                continue
            for words in commands(block.text):
                if words[0] == "helm" and words[1] in ("upgrade", "install", "template"):
                    releases.append(render(chart, words, root, block.where))
                    check_release(releases[-1])
                elif words[0] == "helm" and words[1] == "test":
                    references.append(("release", words[2], block.where))
                elif words[0] == "kubectl" and "create" in words:
                    creating = words[words.index("create") + 1]
                    if creating == "secret":
                        name, keys, files = secret_of(words)
                        secrets[name] = keys
                        if kubectl:
                            made = kubectl_renders(words, root, files)
                            assert made["kind"] == "Secret", block.where
                            assert set(made["data"]) == keys, block.where
                    elif kubectl:
                        assert kubectl_renders(words, root, [])["kind"], block.where
                if words[0] == "kubectl":
                    for word in words:
                        if ref := re.fullmatch(r"(deployment|svc|service)/([a-z0-9-]+)", word):
                            references.append((ref[1], ref[2], block.where))
    if not releases:
        return
    names = {(o["kind"], o["metadata"]["name"]) for r in releases for o in r.objects}
    for kind, name, where in references:
        if kind == "release":
            assert name in {r.name for r in releases}, f"{where}: no release {name}"
        else:
            wanted = "Deployment" if kind == "deployment" else "Service"
            assert (wanted, name) in names, f"{where}: {kind}/{name} is not what Helm makes"
    for release in releases:
        (deployment,) = [o for o in release.objects if o["kind"] == "Deployment"]
        for volume in deployment["spec"]["template"]["spec"]["volumes"]:
            secret = volume.get("secret")
            if not secret or secret["secretName"].endswith("-limit-key"):
                continue
            mounted = {item["key"] for item in secret.get("items", [])}
            assert secret["secretName"] in secrets, (
                f"{release.where}: the page never creates Secret {secret['secretName']}")
            missing = mounted - secrets[secret["secretName"]]
            assert not missing, f"{release.where}: the Secret lacks {missing}; pods would not start"


def test_every_values_block_renders_with_the_chart(tmp_path: Path) -> None:
    found = [b for b in all_blocks() if b.lang == "yaml" and b.has("values")]
    assert len(found) >= 2
    with helm.Chart.load(CHART) as chart:
        for block in found:
            (tmp_path / "values.yaml").write_text(block.text)
            check_release(render(chart, ["helm", "template", "docs", CHART_PATH,
                                         "-f", "values.yaml"], tmp_path, block.where))


def test_docker_builds_pass_only_the_dockerfiles_build_arguments() -> None:
    declared = set(re.findall(r"^ARG (\w+)", (ROOT / "Dockerfile").read_text(), re.M))
    builds = 0
    for block in all_blocks():
        if block.attr("needs") != "docker":
            continue
        for words in commands(block.text):
            if words[:2] == ["docker", "build"]:
                builds += 1
                for i, word in enumerate(words):
                    if word == "--build-arg":
                        name = words[i + 1].split("=", 1)[0]
                        assert name in declared, f"{block.where}: no ARG {name} in the Dockerfile"
    assert builds >= 1


# -- links -------------------------------------------------------------------------


def test_every_relative_link_resolves() -> None:
    for page in PAGES:
        for target in links(page):
            if re.match(r"^[a-z]+:", target):
                continue  # https:, mailto:
            path, _, anchor = target.partition("#")
            resolved = (page.parent / path).resolve() if path else page
            assert resolved.exists(), f"{page_id(page)}: {target} does not exist"
            if anchor:
                assert resolved.suffix == ".md", f"{page_id(page)}: {target}"
                assert anchor in anchors(resolved), f"{page_id(page)}: no #{anchor} in {path}"
