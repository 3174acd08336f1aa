"""Direct-scrape fallback: pods found through the API server (kmock), TF Serving scraped for real.

One emulator replica on 127.0.0.1 plays the Running pod; a Pending pod and a pod of another app
must be ignored. Two scrapes with load in between give a real request rate.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from test_runtime_kubeemu import DEPLOYMENTS, PODS, VersionedEmulator, api_client_for, deployment

from autoscaler.core.types import TargetKey
from autoscaler.emulator import EmulatorReplica, ReplicaConfig, poisson_arrivals, replay
from autoscaler.runtime.discovery import PodDiscoveringSource
from autoscaler.sources.scrape import ScrapeSource
from autoscaler.spec.types import ServingAutoscalerSpec, TargetRef

pytestmark = pytest.mark.kmock(cls=VersionedEmulator)


def pod(name: str, app: str, phase: str, ip: str | None) -> dict[str, Any]:
    status: dict[str, Any] = {"phase": phase}
    if ip:
        status["podIP"] = ip
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "ml", "labels": {"app": app}},
        "spec": {"containers": [{"name": "tfserving", "image": "tensorflow/serving"}]},
        "status": status,
    }


async def test_discovers_running_pods_and_scrapes_them(kmock: VersionedEmulator) -> None:
    async with EmulatorReplica(ReplicaConfig(model_name="resnet", time_scale=10.0)) as replica:
        kmock.seed(DEPLOYMENTS, "ml", "resnet", deployment(replicas=2))
        kmock.seed(PODS, "ml", "resnet-a", pod("resnet-a", "resnet", "Running", "127.0.0.1"))
        kmock.seed(PODS, "ml", "resnet-b", pod("resnet-b", "resnet", "Pending", None))
        kmock.seed(PODS, "ml", "other-a", pod("other-a", "other", "Running", "127.0.0.1"))
        spec = ServingAutoscalerSpec(name="resnet", target=TargetRef("ml", "resnet", "resnet", rest_port=replica.port))
        source = PodDiscoveringSource(api_client_for(kmock), ScrapeSource(rate_window_s=30.0))
        try:
            assert await asyncio.to_thread(source.endpoints, spec) == {"resnet-a": replica.url}
            await replica.wait_ready(5)
            await asyncio.to_thread(source.observe, [spec], 1000.0)
            res = await replay(poisson_arrivals(40.0, 1.0, seed=1), [replica.url], model="resnet")
            assert res.ok > 10
            obs = (await asyncio.to_thread(source.observe, [spec], 1002.0))[TargetKey("ml", "resnet")]
        finally:
            source.close()
    assert obs.request_rate_rps.ok
    assert obs.request_rate_rps.value == pytest.approx(res.ok / 2.0, rel=0.01)
    assert obs.current_replicas == 1  # pods the scraper sees; the loop takes spec.replicas from the actuator
