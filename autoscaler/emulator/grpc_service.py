"""The gRPC face of an emulated replica: `PredictionService/Predict` and `ModelService/GetModelStatus`.

Owns the gRPC surface, built from the generated stubs of the optional `tensorflow-serving-api`
package (extra `tfserving`), so the wire format is TF Serving's own. Imported lazily by
`replica.py` only when a gRPC port is requested: the stubs import TensorFlow's protos, which
loads TensorFlow. Requests share the replica's batch queue and metrics; they are counted with
`API="Predict", entrypoint="GRPC"` as `prediction_service_impl.cc` does.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import grpc

if TYPE_CHECKING:
    from autoscaler.emulator.replica import EmulatorReplica


def available() -> tuple[bool, str]:
    """Whether the `tensorflow_serving.apis` stubs import, and why not."""
    try:
        import tensorflow_serving.apis.prediction_service_pb2_grpc  # noqa: F401
    except ImportError as e:  # pragma: no cover - depends on the optional extra
        return False, f"tensorflow-serving-api is not installed ({e}); install the 'tfserving' extra"
    return True, ""


_GRPC_CODE = {
    "OK": grpc.StatusCode.OK,
    "INVALID_ARGUMENT": grpc.StatusCode.INVALID_ARGUMENT,
    "NOT_FOUND": grpc.StatusCode.NOT_FOUND,
    "UNAVAILABLE": grpc.StatusCode.UNAVAILABLE,
    "RESOURCE_EXHAUSTED": grpc.StatusCode.RESOURCE_EXHAUSTED,
}


async def start_grpc_server(replica: EmulatorReplica, host: str, port: int) -> tuple[Any, int]:
    """Start a grpc.aio server for `replica`; returns (server, bound port)."""
    from tensorflow_serving.apis import (
        get_model_status_pb2,
        model_service_pb2_grpc,
        predict_pb2,
        prediction_service_pb2_grpc,
    )

    class _Prediction(prediction_service_pb2_grpc.PredictionServiceServicer):  # type: ignore[misc]
        async def Predict(self, request: Any, context: Any) -> Any:
            spec = request.model_spec
            version = str(spec.version.value) if spec.HasField("version") else None
            rows = 1
            if request.inputs:
                first = next(iter(request.inputs.values()))
                dims = first.tensor_shape.dim
                rows = int(dims[0].size) if dims else 1
            out = await replica.predict(spec.name, version, rows, api="Predict", entrypoint="GRPC")
            if out.status != "OK":
                await context.abort(_GRPC_CODE.get(out.status, grpc.StatusCode.INTERNAL), out.message)
            resp = predict_pb2.PredictResponse()
            resp.model_spec.name = spec.name
            resp.model_spec.version.value = replica.serving_version() or replica.config.version
            t = resp.outputs["predictions"]
            t.dtype = 1  # DT_FLOAT
            t.tensor_shape.dim.add().size = rows
            t.tensor_shape.dim.add().size = 1
            t.float_val.extend([float(i % 1000) / 1000.0 for i in range(rows)])
            return resp

    class _Models(model_service_pb2_grpc.ModelServiceServicer):  # type: ignore[misc]
        async def GetModelStatus(self, request: Any, context: Any) -> Any:
            cfg = replica.config
            spec = request.model_spec
            states = replica.version_states()
            if spec.HasField("version"):
                states = [(v, s) for v, s in states if v == spec.version.value]
            if spec.name not in cfg.served() or not states:
                await context.abort(grpc.StatusCode.NOT_FOUND, f"Could not find any versions of model {spec.name}")
            resp = get_model_status_pb2.GetModelStatusResponse()
            for version, state in reversed(states):  # newest first, like the REST reply
                st = resp.model_version_status.add()
                st.version = version
                st.state = get_model_status_pb2.ModelVersionStatus.State.Value(state)
                st.status.error_code = 0  # OK
                st.status.error_message = ""
            return resp

    server = grpc.aio.server()
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(_Prediction(), server)
    model_service_pb2_grpc.add_ModelServiceServicer_to_server(_Models(), server)
    bound = server.add_insecure_port(f"{host}:{port}")
    await server.start()
    return server, int(bound)
