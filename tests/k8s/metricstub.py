"""A scripted external.metrics.k8s.io server for comparing the real HPA with our copy of it.

Serves one External metric whose value is the next entry of a script on every read (the HPA
controller reads each metric exactly once per reconcile, so entry i is what reconcile i saw), and
records when each read happened. TLS with the certificate the APIService's `caBundle` trusts; no
client authentication, because what is compared here is the controller's arithmetic, not access
control (test_k8s_auth.py covers that with the real adapter).
"""

from __future__ import annotations

import ssl
import time
from collections.abc import Sequence
from typing import Any

from aiohttp import web
from controlplane import Pem

GROUP_VERSION = "external.metrics.k8s.io/v1beta1"


def milli(value: float) -> str:
    return f"{round(value * 1000)}m"


class ScriptedExternalMetric:
    """`values[i]` is served to the i-th read in `namespace`; after the script ends, the last value repeats."""

    def __init__(self, metric: str, values: Sequence[float], namespace: str) -> None:
        self.metric, self.namespace = metric, namespace
        self.values = list(values)
        self.reads: list[tuple[float, float]] = []  # (wall time s, value served)
        self._runner: web.AppRunner | None = None

    @property
    def done(self) -> bool:
        return len(self.reads) >= len(self.values)

    async def _discovery(self, request: web.Request) -> web.Response:
        return web.json_response(
            {
                "kind": "APIResourceList",
                "apiVersion": "v1",
                "groupVersion": GROUP_VERSION,
                "resources": [
                    {
                        "name": "*",
                        "singularName": "",
                        "namespaced": True,
                        "kind": "ExternalMetricValueList",
                        "verbs": ["get"],
                    }
                ],
            }
        )

    async def _metric(self, request: web.Request) -> web.Response:
        # other HPAs in the cluster may read the same metric name: only this namespace's reads count
        if request.match_info["metric"] != self.metric or request.match_info["ns"] != self.namespace:
            return web.json_response({"kind": "Status", "status": "Failure", "code": 404}, status=404)
        value = self.values[min(len(self.reads), len(self.values) - 1)]
        self.reads.append((time.time(), value))
        item: dict[str, Any] = {
            "metricName": self.metric,
            "metricLabels": {},
            "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "value": milli(value),
        }
        return web.json_response(
            {"kind": "ExternalMetricValueList", "apiVersion": GROUP_VERSION, "metadata": {}, "items": [item]}
        )

    async def start(self, port: int, cert: Pem) -> None:
        app = web.Application()
        app.router.add_get(f"/apis/{GROUP_VERSION}", self._discovery)
        app.router.add_get(f"/apis/{GROUP_VERSION}/namespaces/{{ns}}/{{metric}}", self._metric)
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(str(cert.cert), str(cert.key))
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", port, ssl_context=ctx).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
