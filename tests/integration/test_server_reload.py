"""A SIGHUP reload and a SIGTERM shutdown of `reusely-gateway serve` log no socket errors."""

from __future__ import annotations

import json
import signal

import httpx

from tests.support.gateway import ServedGateway, wait_for
from tests.support.upstream import Upstream

POLICY = """
routes:
  - name: behaviour
    path: /b/{kind}
    methods: [GET]
    credentials: [api_key]
    access: public
"""


def test_reload_and_shutdown_close_each_listening_socket_once(tmp_path):
    upstream = Upstream().start()
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY)
    gw = ServedGateway(policy, upstream.url, workers=2).start()
    try:
        wait_for(lambda: gw.output().count("Application startup complete") >= 2,
                 "both workers started", timeout=30)
        assert httpx.get(gw.url + "/b/ok").status_code == 200
        gw.signal(signal.SIGHUP)
        wait_for(lambda: gw.output().count("Finished server process") >= 2,
                 "the old workers finished", timeout=30)
        wait_for(lambda: gw.output().count("Application startup complete") >= 4,
                 "the new workers started", timeout=30)
        assert httpx.get(gw.url + "/b/ok").status_code == 200
        gw.signal(signal.SIGTERM)
        assert gw.proc is not None and gw.proc.wait(30) == 0
        output = gw.output()
    finally:
        gw.stop()
        upstream.stop()
    assert output.count("Finished server process") == 4  # two reloaded, two shut down
    assert "Shutting down: Master" in output
    assert "Bad file descriptor" not in output
    assert "Error while closing socket" not in output
    lines = [json.loads(line) for line in output.splitlines() if line.strip()]
    assert not [line for line in lines if line["level"] in ("error", "critical")]
    assert "Traceback" not in output
