"""The names the docs use are the code's, both ways, and ARCHITECTURE.md holds.

Environment variables (docs/configuration.md) against those the code and the
scripts read; policy keys and their defaults against the policy's JSON
Schema; metrics with their types and labels (docs/operations.md) against the
metrics the gateway registers and the tests' table of them; error codes
against the `GatewayError` tree; alerts against the shipped rules;
command-line verbs against the parser.
ARCHITECTURE.md's request path is the code's docstrings, its layering holds
for every import, and no file of the repository cites a document that is not
in it. Part of `make docs-check`.
"""

from __future__ import annotations

import ast
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry

from gateway import errors
from gateway.cli import _parser
from gateway.metrics import Metrics
from gateway.policy import json_schema
from gateway.settings import CREDENTIAL_ENV
from tests.support.docs import blocks, code_names, tables
from tests.support.gateway import ROOT
from tests.support.metrics import METRICS

CONFIGURATION = ROOT / "docs" / "configuration.md"
OPERATIONS = ROOT / "docs" / "operations.md"
ARCHITECTURE = ROOT / "ARCHITECTURE.md"
CHART = ROOT / "charts" / "reusely-gateway"


def page_id(page: Path) -> str:
    return str(page.relative_to(ROOT))


def table(page: Path, *header: str) -> list[list[str]]:
    rows = [row for t in tables(page) if t.header[:len(header)] == list(header)
            for row in t.rows]
    assert rows, f"{page_id(page)}: no table with columns {header}"
    return rows


ENV_NAME = re.compile(r"\b(?:REUSELY|GATEWAY|SANDBOX|PROMETHEUS|DEMO|TEST)_[A-Z0-9_]*[A-Z0-9]\b")


def test_the_documented_environment_is_the_codes() -> None:
    sources = [*(ROOT / "gateway").rglob("*.py"), *(ROOT / "scripts").iterdir(),
               ROOT / "Makefile"]
    used = {name for path in sources for name in ENV_NAME.findall(path.read_text())}
    documented = {name for row in table(CONFIGURATION, "variable")
                  for name in code_names(row[0])}
    file_forms = {f"{name}_FILE" for name in CREDENTIAL_ENV.values()}
    assert used - documented == set(), "used in the code, not in docs/configuration.md"
    assert documented - used - file_forms == set(), "documented, never read by the code"


def schema_keys() -> dict[str, Any]:
    """Every key path of the policy schema (`routes[].limits[].per`) -> its default."""
    schema = json_schema()
    defs = schema.get("$defs", {})
    found: dict[str, Any] = {}

    def resolve(node: dict[str, Any]) -> dict[str, Any]:
        while "$ref" in node:
            node = defs[node["$ref"].rsplit("/", 1)[1]]
        return node

    def walk(node: dict[str, Any], prefix: str) -> None:
        node = resolve(node)
        for option in node.get("anyOf", []):
            if "properties" in resolve(option):
                walk(option, prefix)
                return
        items = node.get("items")
        if node.get("type") == "array" and isinstance(items, dict) and "properties" in resolve(
                items):
            walk(items, prefix + "[]")
            return
        for key, child in node.get("properties", {}).items():
            path = f"{prefix}.{key}" if prefix else key
            found[path] = child.get("default", resolve(child).get("default", ...))
            walk(child, path)

    walk(schema, "")
    return found


def test_the_documented_policy_keys_are_the_schemas_with_its_defaults() -> None:
    keys = schema_keys()
    documented: dict[str, str] = {}
    for row in table(CONFIGURATION, "key", "type", "default", "meaning"):
        names = code_names(row[0])
        defaults = (row[2].split(", ") if len(names) > 1 and row[2].count(", ") == len(names) - 1
                    else [row[2]] * len(names))
        documented.update(zip(names, defaults, strict=True))
    assert set(keys) - set(documented) == set(), "in the schema, not in docs/configuration.md"
    assert set(documented) - set(keys) == set(), "documented, not in the schema"
    compared = 0
    for name, cell in documented.items():
        text = cell.replace("`", "").strip()
        if keys[name] is ... or not text or " " in text or text in ("none", "required"):
            continue
        assert yaml.safe_load(text) == keys[name], f"{name}: documented {text}, is {keys[name]}"
        compared += 1
    assert compared >= 15


def test_the_documented_metrics_are_the_codes_with_their_types_and_labels() -> None:
    registry = CollectorRegistry()
    Metrics(registry, version="docs")
    exported = {}
    for collector in set(registry._names_to_collectors.values()):
        name = collector._name + ("_total" if collector._type == "counter" else "")
        exported[name] = (collector._type, set(collector._labelnames))
    documented = {}
    for row in table(OPERATIONS, "metric", "type", "labels"):
        (name,) = code_names(row[0])
        labels = {label for label in code_names(row[2]) if re.fullmatch(r"[a-z_]+", label)}
        documented[name] = (row[1].split()[0], labels)
    assert documented == exported
    assert documented == METRICS, "the tests' table (tests/support/metrics.py) is the docs'"


def test_the_documented_error_codes_are_the_codes() -> None:
    def tree(cls: type[errors.GatewayError]) -> Iterator[type[errors.GatewayError]]:
        yield cls
        for sub in cls.__subclasses__():
            yield from tree(sub)

    answered = {(cls.status_code, cls.code) for cls in tree(errors.GatewayError)}
    documented = {(int(row[0]), code_names(row[1])[0])
                  for row in table(CONFIGURATION, "status", "code", "when")}
    assert documented == answered


def test_the_documented_alerts_are_the_shipped_rules() -> None:
    rules = yaml.safe_load((CHART / "files" / "alerts.yaml").read_text())
    shipped = {(r["alert"], r["labels"]["severity"]) for g in rules["groups"]
               for r in g["rules"]}
    documented = {(code_names(row[0])[0], row[1])
                  for row in table(OPERATIONS, "alert", "severity")}
    assert documented == shipped


def verbs(parser: Any) -> dict[str, set[str]]:
    action = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    out = {}
    for name, sub in action.choices.items():
        inner = [a for a in sub._actions if a.__class__.__name__ == "_SubParsersAction"]
        out[name] = set(inner[0].choices) if inner else set()
    return out


def test_the_documented_commands_are_the_clis() -> None:
    documented: dict[str, set[str]] = {}
    for line in CONFIGURATION.read_text().splitlines():
        if match := re.match(r"^### `([a-z-]+)(?: ([a-z|]+))?[ `]", line):
            documented[match[1]] = set(match[2].split("|")) if match[2] else set()
    assert documented == verbs(_parser())


# -- ARCHITECTURE.md ---------------------------------------------------------------


def docstring_table(module: Path) -> str:
    doc = ast.get_docstring(ast.parse(module.read_text()), clean=False) or ""
    lines = doc.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("    "))
    end = next((i for i in range(start, len(lines)) if not lines[i].strip()), len(lines))
    return "\n".join(lines[start:end]) + "\n"


@pytest.mark.parametrize("module", ["app.py", "forward.py"])
def test_the_architecture_shows_the_request_path_as_the_code_does(module: str) -> None:
    code = docstring_table(ROOT / "gateway" / module)
    shown = [b.text for b in blocks(ARCHITECTURE) if b.lang == "text"]
    assert code in shown, f"copy gateway/{module}'s table into ARCHITECTURE.md:\n{code}"


def imports() -> dict[str, set[str]]:
    """gateway module -> the gateway modules it imports (`sandbox` for the package)."""
    found = {}
    for path in sorted((ROOT / "gateway").glob("*.py")):
        deps = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                if node.module.startswith("gateway."):
                    deps.add(node.module.split(".")[1])
                elif node.module == "gateway":
                    deps |= {a.name for a in node.names if a.name != "__version__"}
            elif isinstance(node, ast.Import):
                deps |= {a.name.split(".")[1] for a in node.names
                         if a.name.startswith("gateway.")}
        found[path.stem] = deps - {path.stem}
    return found


def test_the_architectures_layers_hold_for_every_import() -> None:
    layers = [(row[0], code_names(row[1])) for row in table(ARCHITECTURE, "layer", "modules")]
    graph = imports()

    def layer_of(module: str) -> int:
        found = [i for i, (_, patterns) in enumerate(layers)
                 if any(re.fullmatch(p.replace("*", "[a-z_]*"), module) for p in patterns)]
        assert len(found) == 1, f"gateway/{module}.py is in {len(found)} layers of ARCHITECTURE.md"
        return found[0]

    for module, deps in graph.items():
        if module == "__init__":
            continue
        own = layer_of(module)
        for dep in deps - {"sandbox"}:
            assert layer_of(dep) >= own, (f"gateway/{module}.py ({layers[own][0]}) imports "
                                          f"{dep} ({layers[layer_of(dep)][0]})")
    assert {m for m, deps in graph.items() if "app" in deps} == {"factory"}
    assert {m for m, deps in graph.items() if "sandbox" in deps} == {"cli"}


def test_starlette_supplies_only_the_path_syntax_and_the_sandbox() -> None:
    users = set()
    for path in (ROOT / "gateway").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([node.module or ""] if isinstance(node, ast.ImportFrom)
                     else [a.name for a in node.names] if isinstance(node, ast.Import) else [])
            if any(n.split(".")[0] == "starlette" for n in names):
                users.add(path.stem)
    assert users == {"routing", "checks"}


# -- the repository stands on its own ------------------------------------------------


def test_no_file_cites_a_document_outside_the_repository() -> None:
    outside = re.compile(r"\b(?:CONTRACT|DESIGN)\.md\b|\.\./shared/|\bthe contract\b", re.I)
    listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"],
                            cwd=ROOT, capture_output=True, text=True, check=True).stdout
    checked = 0
    for name in listed.splitlines():
        path = ROOT / name
        if not path.is_file() or path.suffix in (".png", ".ico"):
            continue
        try:
            text = path.read_text()
        except UnicodeDecodeError:
            continue
        checked += 1
        assert not outside.search(text), f"{name}: {outside.search(text)}"
    assert checked > 100
