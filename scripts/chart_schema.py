"""Write the gateway's policy schema into the chart's values.schema.json.

The chart validates its `policy` value with the very schema the gateway
publishes (`reusely-gateway schema`, from the policy's own types), so the two
can never disagree about a key. The policy's `$defs` are hoisted to the
values schema's root under a `policy.` prefix, references rewritten to match.

    python scripts/chart_schema.py          # rewrite the chart's schema
    python scripts/chart_schema.py --check  # exit 1 if it is out of date
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from gateway.policy import json_schema

CHART_SCHEMA = Path(__file__).resolve().parents[1] / "charts/reusely-gateway/values.schema.json"
PREFIX = "policy."


def _rewrite(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: (f"#/$defs/{PREFIX}{v.removeprefix('#/$defs/')}"
                    if k == "$ref" and isinstance(v, str) else _rewrite(v))
                for k, v in node.items()}
    if isinstance(node, list):
        return [_rewrite(v) for v in node]
    return node


def chart_schema(current: dict[str, Any]) -> dict[str, Any]:
    policy = _rewrite(json_schema())
    defs = {f"{PREFIX}{name}": body for name, body in policy.pop("$defs", {}).items()}
    for key in ("$schema", "$id"):
        policy.pop(key, None)
    out = dict(current)
    out["properties"] = {**current["properties"], "policy": policy}
    others = {k: v for k, v in current.get("$defs", {}).items() if not k.startswith(PREFIX)}
    out["$defs"] = {**others, **defs}
    return out


def main(argv: list[str]) -> int:
    current = json.loads(CHART_SCHEMA.read_text())
    wanted = chart_schema(current)
    if "--check" in argv:
        if wanted != current:
            print(f"{CHART_SCHEMA} is out of date: run python scripts/chart_schema.py",
                  file=sys.stderr)
            return 1
        return 0
    CHART_SCHEMA.write_text(json.dumps(wanted, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
