"""What rotating a key needs from the chart: Secret volumes the kubelet can update in
place, and a dedicated limit key whatever the values say.

The gateway watches its credential files, so a Secret update reaches the pods
with no restart, but only through a whole-volume mount: a `subPath` mount is a
copy the kubelet never updates. And without a limit key secret the HMAC key
would come from the API key, which a rotation changes for every pod started
after it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from deploy_support import Manifests, container, gateway_pod_spec, production_values

Render = Callable[[dict[str, Any] | None], Manifests]

VARIANTS = {
    "default": None,
    "credentials-secret": {"credentials": {"existingSecret": "reusely-credentials"}},
    "secret-with-limit-key": {"credentials": {"existingSecret": "reusely-credentials",
                                              "keys": {"limitKeySecret": "hmac"}}},
    "production": production_values(),
}


@pytest.mark.parametrize("values", VARIANTS.values(), ids=VARIANTS.keys())
def test_every_secret_is_mounted_whole_so_the_kubelet_updates_it_in_place(
        render: Render, values: dict[str, Any] | None) -> None:
    objects = render(values)
    secrets = {v["name"] for v in gateway_pod_spec(objects)["volumes"] if "secret" in v}
    assert secrets, "no Secret volume"
    mounts = [m for m in container(objects)["volumeMounts"] if m["name"] in secrets]
    assert {m["name"] for m in mounts} == secrets
    for mount in mounts:
        assert "subPath" not in mount and "subPathExpr" not in mount, mount
        assert mount["readOnly"] is True


@pytest.mark.parametrize("values", VARIANTS.values(), ids=VARIANTS.keys())
def test_the_limit_key_never_comes_from_the_api_key(render: Render,
                                                     values: dict[str, Any] | None) -> None:
    objects = render(values)
    env = {e["name"]: e for e in container(objects)["env"]}
    assert env["GATEWAY_LIMIT_KEY_SECRET_FILE"]["value"].startswith("/var/run/secrets/")
    assert "GATEWAY_LIMIT_KEY_SECRET" not in env
    mounted = {m["mountPath"] for m in container(objects)["volumeMounts"]}
    directory = env["GATEWAY_LIMIT_KEY_SECRET_FILE"]["value"].rsplit("/", 1)[0]
    assert directory in mounted
