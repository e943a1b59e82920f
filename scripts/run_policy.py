"""Write the policy `make run` serves: a policy file plus a demo client for this run.

    python scripts/run_policy.py SOURCE.yaml DEST.yaml [ORIGIN ...]   # prints the token

The demo client may call every internal route of SOURCE. Its token is made
fresh on each start and printed on stdout; only its SHA-256 goes into DEST,
which `make run` keeps in a temporary directory it removes on exit, so no
file in the repository ever holds a token. ORIGINs, when given, replace
``cors.allow_origins`` (`make demo` allows its page's origin this way).
"""

from __future__ import annotations

import os
import secrets
import sys
from pathlib import Path

import yaml

from gateway.tokens import token_sha256

CLIENT = "make-run-demo"


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    source, dest, origins = Path(argv[0]), Path(argv[1]), argv[2:]
    policy = yaml.safe_load(source.read_text())
    internal = [r["name"] for r in policy["routes"] if r.get("access") == "internal"]
    token = secrets.token_urlsafe(32)
    clients = [c for c in policy.get("clients") or [] if c.get("name") != CLIENT]
    if internal:
        clients.append({"name": CLIENT, "token_sha256": token_sha256(token), "routes": internal})
    policy["clients"] = clients
    if origins:
        policy.setdefault("cors", {})["allow_origins"] = origins
    fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        yaml.safe_dump(policy, out, sort_keys=False)
    print(token)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
