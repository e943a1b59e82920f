"""`make demo`: it says "open" only once everything answers, and Ctrl-C ends it cleanly."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest

from tests.support.gateway import free_port
from tests.support.scripts import ScriptRun, loopback_bind, script_env


def test_demo_is_ready_when_it_says_open_and_stops_cleanly_on_ctrl_c(tmp_path: Path) -> None:
    page_port, gateway, metrics, sandbox = free_port(), loopback_bind(), loopback_bind(), \
        loopback_bind()
    env = script_env(DEMO_PAGE_PORT=str(page_port), GATEWAY_BIND=gateway,
                     GATEWAY_METRICS_BIND=metrics, SANDBOX_BIND=sandbox)
    run = ScriptRun("demo", env, tmp_path)
    page = f"http://127.0.0.1:{page_port}"
    try:
        text = run.wait_for_output("Ctrl-C stops everything")
        assert f"open {page}/" in text
        # Everything answers the moment the line is printed: no polling here.
        with httpx.Client(trust_env=False, timeout=5) as client:
            assert "reusely-trade-in" in client.get(page + "/").text
            widget = client.get(page + "/widget.js").text
            assert f'"http://{gateway}"' in widget
            categories = client.get(f"http://{gateway}/api/v2/public/catalog/categories",
                                    headers={"Origin": page})
            assert categories.status_code == 200
            assert categories.headers["access-control-allow-origin"] == page
            assert client.get(f"http://{metrics}/metrics").status_code == 200
        temp_dir = re.search(r"(/\S+/reusely-demo\.\w+)", text)
        assert temp_dir, text
        status = run.interrupt()
        output = run.output()
        assert status == 130, output
        assert "Segmentation fault" not in output
        assert run.members() == []
        assert not Path(temp_dir[1]).exists()
        for url in (page, f"http://{gateway}", f"http://{sandbox}", f"http://{metrics}"):
            with pytest.raises(httpx.ConnectError):
                httpx.get(url + "/", timeout=2, trust_env=False)
    finally:
        run.stop()
