"""The chart validates its `policy` value with the gateway's own policy schema."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_the_charts_policy_schema_is_the_gateways():
    done = subprocess.run([sys.executable, str(REPO / "scripts" / "chart_schema.py"), "--check"],
                          capture_output=True, text=True, cwd=REPO, timeout=60)
    assert done.returncode == 0, done.stderr


def test_the_charts_schema_knows_every_route_option():
    schema = json.loads((REPO / "charts/reusely-gateway/values.schema.json").read_text())
    route = schema["$defs"]["policy.Route"]["properties"]
    for option in ("idempotency", "cache_ttl", "stale_if_error", "stale_while_revalidate",
                   "max_body_bytes", "timeout", "retries", "on_error", "limits"):
        assert option in route, option
