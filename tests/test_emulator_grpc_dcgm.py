"""gRPC Predict / GetModelStatus through TF Serving's generated stubs, and the fake DCGM exporter."""

from __future__ import annotations

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from autoscaler.emulator import EmulatorReplica, FakeDcgmExporter, ReplicaConfig, poisson_arrivals, replay
from autoscaler.emulator.grpc_service import available

_HAVE_TFS, _WHY = available()


@pytest.mark.skipif(not _HAVE_TFS, reason=_WHY or "tensorflow-serving-api missing")
async def test_grpc_predict_and_model_status() -> None:
    import grpc
    from tensorflow_serving.apis import (
        get_model_status_pb2,
        model_service_pb2_grpc,
        predict_pb2,
        prediction_service_pb2_grpc,
    )

    async with EmulatorReplica(ReplicaConfig(grpc_port=0, startup_delay_s=0.3, time_scale=5.0)) as r:
        assert r.grpc_port > 0
        async with grpc.aio.insecure_channel(f"127.0.0.1:{r.grpc_port}") as ch:
            models = model_service_pb2_grpc.ModelServiceStub(ch)
            req = get_model_status_pb2.GetModelStatusRequest()
            req.model_spec.name = "resnet"
            resp = await models.GetModelStatus(req)
            states = get_model_status_pb2.ModelVersionStatus.State
            assert resp.model_version_status[0].state == states.Value("LOADING")
            await r.wait_ready(3)
            resp = await models.GetModelStatus(req)
            assert resp.model_version_status[0].version == 1
            assert resp.model_version_status[0].state == states.Value("AVAILABLE")
            pred = prediction_service_pb2_grpc.PredictionServiceStub(ch)
            p = predict_pb2.PredictRequest()
            p.model_spec.name = "resnet"
            t = p.inputs["x"]
            t.dtype = 1
            t.tensor_shape.dim.add().size = 3
            t.tensor_shape.dim.add().size = 1
            t.float_val.extend([1.0, 2.0, 3.0])
            out = await pred.Predict(p)
            assert out.outputs["predictions"].tensor_shape.dim[0].size == 3
            p.model_spec.name = "missing"
            with pytest.raises(grpc.aio.AioRpcError) as e:
                await pred.Predict(p)
            assert e.value.code() == grpc.StatusCode.NOT_FOUND
    lat = r.metrics.request_latency.cells
    assert ("resnet", "Predict", "GRPC") in lat and sum(lat[("resnet", "Predict", "GRPC")].counts) == 1
    assert r.metrics.request_count.cells[("resnet", "OK")] == 1
    assert r.metrics.request_count.cells[("missing", "NOT_FOUND")] == 1


async def test_dcgm_exporter_reports_busy_fraction_with_real_labels() -> None:
    """Utilization = busy seconds / sampling interval, on the exporter's own (injected) clock.

    Deterministic: the interval is set by the test, and the replica's busy time is read after the
    replay has finished (every batch done), so machine load cannot move the expected value.
    """
    clock = [100.0]
    cfg = ReplicaConfig(namespace="serving", pod="resnet-7d9f-abcde", time_scale=1.0)
    async with EmulatorReplica(cfg) as idle_cfg_replica:
        busy = await EmulatorReplica(ReplicaConfig(namespace="serving", pod="resnet-7d9f-xyz12")).start()
        exp = await FakeDcgmExporter([idle_cfg_replica, busy], sample_period_s=None, now_s=lambda: clock[0]).start()
        try:
            await busy.wait_ready(2)
            exp.sample()  # baseline at t = 100 s
            busy0 = busy.busy_seconds()
            await replay(poisson_arrivals(60.0, 1.6, seed=1), [busy.url], model="resnet")
            busy_s = busy.busy_seconds() - busy0
            clock[0] += 4.0
            exp.sample()  # 4 s after the baseline, by the exporter's clock
            async with aiohttp.ClientSession() as s, s.get(f"{exp.url}/metrics") as resp:
                page = await resp.text()
        finally:
            await exp.stop()
            await busy.stop()
    fams = {f.name: f for f in text_string_to_metric_families(page)}
    util = {s.labels["pod"]: s for s in fams["DCGM_FI_DEV_GPU_UTIL"].samples}
    active = {s.labels["pod"]: s for s in fams["DCGM_FI_PROF_GR_ENGINE_ACTIVE"].samples}
    want = {"gpu", "UUID", "pci_bus_id", "device", "modelName", "Hostname", "DCGM_FI_DRIVER_VERSION"}
    assert want | {"container", "namespace", "pod"} <= set(util["resnet-7d9f-xyz12"].labels)
    assert util["resnet-7d9f-xyz12"].labels["namespace"] == "serving"
    assert util["resnet-7d9f-abcde"].value == 0.0
    # ~96 single-row batches at 7.34 ms each: about 0.7 s busy in the 4 s interval
    assert 0.0 < busy_s < 4.0
    assert active["resnet-7d9f-xyz12"].value == pytest.approx(busy_s / 4.0, rel=1e-6)
    assert util["resnet-7d9f-xyz12"].value == round(100 * busy_s / 4.0)  # DCGM reports whole percent
