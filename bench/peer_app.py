"""The Python peer: fastapi-proxy-lib's reverse proxy with an httpx client
that adds the Reusely headers. Run by bench/run.py under gunicorn with one
uvicorn worker, from its own venv (bench/.venv-peer)."""

import os

import httpx
from fastapi_proxy_lib.fastapi.app import reverse_http_app

_client = httpx.AsyncClient(
    headers={
        "x-api-key": os.environ["REUSELY_API_KEY"],
        "x-tenant-id": os.environ["REUSELY_TENANT_ID"],
        "x-secret-key": os.environ["REUSELY_SECRET_KEY"],
    },
    timeout=httpx.Timeout(20.0, connect=3.0, pool=3.0),
)

app = reverse_http_app(client=_client, base_url=os.environ["REUSELY_BASE_URL"].rstrip("/") + "/")
