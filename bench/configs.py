"""nginx configurations: the fake Reusely upstream and the C reference proxy.

Both run from a temp dir (no system service, nothing outside it written), one
worker each, keep-alive without limits so that wrk's connections are never
closed under it. The upstream answers fixed bodies from memory: it must be much
faster than anything it is measured through. The gateways' policies are the
YAML files beside this module (policy.yaml, policy-nolimits.yaml), named by
targets.GATEWAYS.
"""

from __future__ import annotations

from pathlib import Path

from settings import (
    ADMIN_JSON,
    API_KEY,
    BURST_PATH,
    CATALOG_JSON,
    HOST,
    MAILIN_JSON,
    PORT,
    SECRET_KEY,
    TENANT_ID,
    UNAUTH_JSON,
)


def _main_block(tmp: Path, name: str) -> str:
    return f"""
worker_processes 1;
daemon off;
pid {tmp}/{name}.pid;
error_log {tmp}/{name}-error.log warn;
events {{ worker_connections 4096; multi_accept on; }}
"""


def _http_preamble(tmp: Path, name: str) -> str:
    """The start of the http block both servers share: no log, keep-alive without end."""
    return f"""
  access_log off;
  keepalive_requests 1000000;
  keepalive_timeout 300s;
  client_body_temp_path {tmp}/{name}-body;"""


def burst_log(tmp: Path) -> Path:
    """Where the upstream logs the requests of the cold burst (and only those)."""
    return tmp / "upstream-burst.log"


def upstream_conf(tmp: Path) -> str:
    def guarded(body: str, secret: bool = False) -> str:
        check = f"if ($http_x_api_key = \"\") {{ return 401 '{UNAUTH_JSON}'; }}"
        if secret:
            check += f"\n      if ($http_x_secret_key = \"\") {{ return 401 '{UNAUTH_JSON}'; }}"
        return f"{check}\n      {body}"

    return _main_block(tmp, "upstream") + f"""
http {{{_http_preamble(tmp, "upstream")}
  sendfile on;
  tcp_nopush on;
  server {{
    listen {HOST}:{PORT['upstream']} backlog=4096;
    default_type application/json;
    location /api/v2/public/catalog/ {{
      {guarded(f"return 200 '{CATALOG_JSON}';")}
    }}
    location {BURST_PATH} {{  # the cold burst: the requests that reached us are counted
      access_log {burst_log(tmp)};
      {guarded(f"return 200 '{CATALOG_JSON}';")}
    }}
    location /api/v2/admin/ {{
      {guarded(f"return 200 '{ADMIN_JSON}';", secret=True)}
    }}
    location = /api/v3/public/offer/mail-in {{
      {guarded(f"return 201 '{MAILIN_JSON}';")}
    }}
    location = /big {{
      default_type application/octet-stream;
      {guarded(f"alias {tmp}/www/big.bin;")}
    }}
    location / {{ return 404 '{{"status_code":404,"message":"Not found"}}'; }}
  }}
}}
"""


def nginx_proxy_conf(tmp: Path) -> str:
    return _main_block(tmp, "nginx") + f"""
http {{{_http_preamble(tmp, "nginx")}
  proxy_temp_path {tmp}/nginx-proxy;
  upstream reusely {{
    server {HOST}:{PORT['upstream']};
    keepalive 32;
    keepalive_requests 1000000;
  }}
  server {{
    listen {HOST}:{PORT['nginx']} backlog=4096;
    location / {{
      proxy_pass http://reusely;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host {HOST}:{PORT['upstream']};
      proxy_set_header Authorization "";
      proxy_set_header x-api-key "{API_KEY}";
      proxy_set_header x-tenant-id "{TENANT_ID}";
      proxy_set_header x-secret-key "{SECRET_KEY}";
      proxy_max_temp_file_size 0;
    }}
  }}
}}
"""
