"""The fixed facts of a benchmark run, in one place for every part of the harness.

Where things live, which core runs what, the ports, the fake Reusely's keys and
answers, and how long each measurement lasts. The harness and the experiments
beside it (variants.py, profile_gateway.py, client_compare.py) read these; the
experiments add their own ports to `PORT`. Standard library only.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
GATEWAY_BIN = ROOT / ".venv" / "bin" / "reusely-gateway"
GATEWAY_PYTHON = ROOT / ".venv" / "bin" / "python"
# Bench-only venvs that bench/run.sh fills from PyPI; none is part of the product.
PEER_VENV = BENCH / ".venv-peer"
FLOOR_AIOHTTP_VENV = BENCH / ".venv-floor-aiohttp"
FLOOR_GRANIAN_VENV = BENCH / ".venv-floor-granian"

PROXY_CPU = "0"  # every proxy under test (nginx, peer, floors, gateways, and their masters)
LOAD_CPU = "1"  # wrk and the upstream nginx

HOST = "127.0.0.1"
PORT = {
    "upstream": 18081,
    "nginx": 18082,
    "peer": 18083,
    "gateway": 18084,
    "gateway-metrics": 18085,
    "gateway-nolimits": 18086,
    "gateway-nolimits-metrics": 18087,
    "floor-aiohttp": 18088,
    "floor-granian": 18089,
    "gateway-cache": 18090,
    "gateway-cache-metrics": 18091,
    "gateway-cache-redis": 18092,
    "gateway-cache-redis-metrics": 18093,
}

API_KEY = "bench-api-key"
TENANT_ID = "bench-tenant"
SECRET_KEY = "bench-secret-key"
# The three headers every proxy adds, and "direct" sends itself.
CREDENTIAL_HEADERS = {"x-api-key": API_KEY, "x-tenant-id": TENANT_ID, "x-secret-key": SECRET_KEY}
# The internal client's bearer token; policy*.yaml holds its sha256.
BENCH_TOKEN = "bench-internal-token-0123456789"
REDIS_DB = "15"
REDIS_URL = f"redis://127.0.0.1:6379/{REDIS_DB}"
BIG_BYTES = 32 * 1024 * 1024

CATALOG_PATH = "/api/v2/public/catalog/categories?limit=20"
ADMIN_PATH = "/api/v2/admin/orders?page=1"
MAILIN_PATH = "/api/v3/public/offer/mail-in"
# The cold burst: BURST_SIZE concurrent GETs of one catalog target no gateway holds yet
# (a query of its own per target and run), each on its own connection. The upstream
# logs requests under this path only, so the ones that reached it can be counted.
BURST_PATH = "/api/v2/public/catalog/burst"
BURST_SIZE = 50

# A catalog answer in Reusely's envelope, padded to about 600 bytes.
CATALOG_JSON = json.dumps(
    {
        "status_code": 200,
        "message": "Successfully get categories",
        "result": {
            "data": [
                {"id": i, "name": n, "slug": n.lower(), "sort": i,
                 "image": f"https://cdn.example.com/categories/{i}.png"}
                for i, n in enumerate(["Smartphones", "Tablets", "Laptops", "Watches"], 1)
            ],
            "pagination": {"page": 1, "limit": 20, "total": 4, "last_page": 1},
        },
    },
    separators=(",", ":"),
)
CATALOG_JSON = CATALOG_JSON[:-2] + ',"note":"' + "x" * max(0, 600 - len(CATALOG_JSON) - 11) + '"}}'
ADMIN_JSON = '{"status_code":200,"message":"OK","result":{"data":[{"id":1,"status":"received"}]}}'
MAILIN_JSON = ('{"status_code":201,"message":"Offer created",'
               '"result":{"offer_id":"OF-BENCH-1","box_id":"BX-BENCH-1"}}')
UNAUTH_JSON = '{"status_code":401,"message":"Unauthenticated."}'


def upstream_env() -> dict[str, str]:
    """What every Python proxy is told about Reusely (the gateway's own variable names)."""
    return {"REUSELY_API_KEY": API_KEY, "REUSELY_TENANT_ID": TENANT_ID,
            "REUSELY_SECRET_KEY": SECRET_KEY,
            "REUSELY_BASE_URL": f"http://{HOST}:{PORT['upstream']}"}


@dataclass
class Timing:
    warm: float = 3.0
    run: float = 5.0
    rounds: int = 3
    light_warm: float = 1.0
    light_run: float = 8.0
    # Light load: one connection, 20 ms think time: well under a quarter of the
    # slowest target's capacity, so the latency measured is service, not queueing.
    think_ms: int = 20
    conns: int = 32
    light_conns: int = 1
    stream_conns: int = 4


QUICK = Timing(warm=1.0, run=2.0, rounds=2, light_warm=0.5, light_run=2.0)


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)
