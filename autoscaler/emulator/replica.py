"""EmulatorReplica: one TF Serving replica stand-in, served over real HTTP (and optionally gRPC).

Owns the REST surface of a TF Serving pod as clients, Prometheus and the autoscaler see it
(`tensorflow_serving/g3doc/api_rest.md`, `model_servers/http_rest_api_handler.cc`):
`POST /v1/models/<m>[/versions/<v>|/labels/<l>]:predict` for each model it serves (`other_models`: a
multi-model server, one batch queue per model on one device), `GET /v1/models/<m>[/versions/<v>]` (model
status), and `/monitoring/prometheus/metrics` rendered exactly like TF Serving. Model versions follow TF
Serving's ModelVersionStatus.State (tensorflow_serving/apis/get_model_status.proto): START when the
manager learns of a version, LOADING for the load + warmup delay, AVAILABLE, then UNLOADING and END once
a newer version is AVAILABLE (the default availability-preserving policy loads the new version before
unloading the old one, so a rollout shows two versions live); every served model follows the same
versions. END versions stay listed, as the status monitor keeps them. Predict without a version goes to
the newest AVAILABLE version. One difference, on purpose: TF Serving opens its ports only after the
initial load, while the replica answers LOADING during it (so tests can see the state); the daemon's
model-status client treats both as "not serving yet". Requests go through a real asyncio batch queue
(`batcher.py`) whose service time per batch comes
from the replica's `ServiceProfile` via `core.capacity.ServiceTime`. Errors use TF Serving's JSON shape
`{"error": "..."}` and its HTTP mapping of canonical codes. gRPC (`grpc_service.py`) is started only
when asked for, because importing `tensorflow_serving.apis` loads all of TensorFlow.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from autoscaler.core.capacity import ServiceTime
from autoscaler.emulator.batcher import BatchQueue, BatchStats, QueueFullError, TaskTooLargeError
from autoscaler.emulator.tfmetrics import TfServingMetrics
from autoscaler.spec.types import BatchingParams, ServedModel, ServiceProfile

log = logging.getLogger(__name__)

METRICS_PATH = "/monitoring/prometheus/metrics"

# canonical code name -> HTTP status, as TF Serving's REST handler maps them (ToHTTPStatusCode)
HTTP_STATUS = {
    "OK": 200,
    "INVALID_ARGUMENT": 400,
    "FAILED_PRECONDITION": 400,
    "NOT_FOUND": 404,
    "UNAVAILABLE": 503,
    "RESOURCE_EXHAUSTED": 429,
    "DEADLINE_EXCEEDED": 504,
    "INTERNAL": 500,
    "UNIMPLEMENTED": 501,
}

_MODEL_PATH = re.compile(r"^/v1/models/(?P<model>[^/:]+)(?:/(?P<kind>versions|labels)/(?P<ver>[^/:]+))?$")
_PREDICT_PATH = re.compile(
    r"^/v1/models/(?P<model>[^/:]+)(?:/(?P<kind>versions|labels)/(?P<ver>[^/:]+))?:(?P<verb>\w+)$"
)


@dataclass(frozen=True)
class ReplicaConfig:
    """How one emulated replica behaves. `time_scale` k makes service and batch timeout k× faster."""

    model_name: str = "resnet"
    version: int = 1
    batching: BatchingParams = field(default_factory=BatchingParams)
    profile: ServiceProfile = field(default_factory=ServiceProfile)
    service_scale: float = 1.0  # multiplies the profile's batch latency (slower/faster hardware)
    startup_delay_s: float = 0.0  # model load + warmup: LOADING until then (already time-scaled)
    unload_delay_s: float = 0.0  # an old version's UNLOADING -> END after a newer one is AVAILABLE
    time_scale: float = 1.0
    host: str = "127.0.0.1"
    port: int = 0  # 0: any free port (see EmulatorReplica.port after start)
    grpc_port: int | None = None  # None: no gRPC server; 0: any free port
    namespace: str = "default"
    pod: str | None = None  # pod name for labels (DCGM); default "<model>-emulator-<port>"
    # More models in the server's model_config_list, each with its own batch queue on the one
    # device (profile None: `profile`); every model uses the one `batching` file, as in TF Serving.
    other_models: tuple[ServedModel, ...] = ()

    def served(self) -> dict[str, ServiceProfile]:
        """Model name -> its service profile, `model_name` first."""
        out = {self.model_name: self.profile}
        for m in self.other_models:
            out[m.name] = m.profile if m.profile is not None else self.profile
        return out


@dataclass(frozen=True)
class PredictOutcome:
    status: str  # canonical code name
    message: str = ""
    rows: int = 0


class EmulatorReplica:
    """A TF Serving replica on 127.0.0.1: `await start()`, use `.url`, `await stop()`."""

    def __init__(self, config: ReplicaConfig | None = None) -> None:
        self.config = config or ReplicaConfig()
        self.metrics = TfServingMetrics()
        self._queue: BatchQueue | None = None  # model_name's
        self._queues: dict[str, BatchQueue] = {}  # every model's, model_name's included
        self._device: asyncio.Semaphore | None = None
        self._runner: web.AppRunner | None = None
        self._grpc: Any = None
        self._port = 0
        self._grpc_bound = 0
        self._loaded = asyncio.Event()
        self._load_task: asyncio.Task[None] | None = None
        self._versions: dict[int, str] = {}  # version -> ModelVersionStatus.State name
        self._version_tasks: list[asyncio.Task[None]] = []
        self._busy_offset_s = 0.0  # busy time of queues replaced by set_batching()

    # ----------------------------------------------------------------- lifecycle
    async def start(self) -> EmulatorReplica:
        self._service = ServiceTime(self.config.profile, self.config.service_scale)
        if self.config.other_models:  # one device for every model's queue
            self._device = asyncio.Semaphore(self.config.profile.device_parallelism)
        self._make_queues(self.config.batching)
        app = web.Application()
        app.router.add_get(METRICS_PATH, self._handle_metrics)
        app.router.add_route("*", "/v1/models/{tail:.*}", self._handle_models)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.config.host, self.config.port)
        await site.start()
        self._port = int(self._runner.addresses[0][1])
        if self.config.grpc_port is not None:
            from autoscaler.emulator.grpc_service import start_grpc_server

            self._grpc, self._grpc_bound = await start_grpc_server(self, self.config.host, self.config.grpc_port)
        self._versions[self.config.version] = "START"
        self._load_task = asyncio.create_task(self._load())
        return self

    async def stop(self) -> None:
        if self._load_task is not None:
            self._load_task.cancel()
        for task in self._version_tasks:
            task.cancel()
        if self._grpc is not None:
            await self._grpc.stop(grace=None)
            self._grpc = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        for q in self._queues.values():
            await q.stop()

    async def __aenter__(self) -> EmulatorReplica:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def _make_queue(self, params: BatchingParams, service: ServiceTime | None = None) -> BatchQueue:
        svc = service or self._service
        q = BatchQueue(
            params,
            svc.ms,
            time_scale=self.config.time_scale,
            on_batch=self._on_batch,
            device_parallelism=svc.profile.device_parallelism,
            device=self._device,
        )
        q.start()
        return q

    def _make_queues(self, params: BatchingParams) -> list[BatchQueue]:
        """A new queue per served model (the old ones are returned for the caller to stop)."""
        old = list(self._queues.values())
        self._queue = self._make_queue(params)
        self._queues = {self.config.model_name: self._queue}
        for name, profile in list(self.config.served().items())[1:]:
            self._queues[name] = self._make_queue(params, ServiceTime(profile, self.config.service_scale))
        return old

    async def _load(self) -> None:
        await self._load_version(self.config.version, self.config.startup_delay_s)

    async def _load_version(self, version: int, delay_s: float) -> None:
        """START -> LOADING -> (delay) AVAILABLE; then older live versions UNLOADING -> END."""
        self._versions[version] = "LOADING"
        await asyncio.sleep(delay_s)
        for name in self.config.served():
            path = f"/models/{name}/{version}"
            self.metrics.load_attempt_count.inc(path, "success")
            self.metrics.load_latency.inc(path, by=int(delay_s * 0.7 * 1e6))
            self.metrics.warmup_latency.observe(delay_s * 0.3 * 1e6, path, "OK")
        self._versions[version] = "AVAILABLE"
        self._loaded.set()
        log.info("emulator %s: models %s version %d AVAILABLE", self.url, ", ".join(self.config.served()), version)
        old = [v for v, st in self._versions.items() if v < version and st in ("AVAILABLE", "LOADING", "START")]
        for v in old:
            self._versions[v] = "UNLOADING"
        if old:
            await asyncio.sleep(self.config.unload_delay_s)
            for v in old:
                self._versions[v] = "END"

    def load_version(self, version: int, delay_s: float | None = None) -> None:
        """Start loading `version` (like a new version directory appearing under the model's base
        path); it serves after `delay_s` (default: the startup delay), then older versions unload."""
        if version in self._versions:
            raise ValueError(f"version: {version} is already known to this replica (states {self._versions})")
        self._versions[version] = "START"
        wait_s = self.config.startup_delay_s if delay_s is None else delay_s
        self._version_tasks.append(asyncio.create_task(self._load_version(version, wait_s)))

    async def set_batching(self, params: BatchingParams) -> None:
        """Swap the batching parameters (like loading a new version with a new batching_params.pbtxt)."""
        for q in self._make_queues(params):
            self._busy_offset_s += q.busy_seconds()
            await q.stop()

    # ----------------------------------------------------------------- state
    @property
    def port(self) -> int:
        return self._port

    @property
    def grpc_port(self) -> int:
        return self._grpc_bound

    @property
    def url(self) -> str:
        return f"http://{self.config.host}:{self._port}"

    @property
    def pod(self) -> str:
        return self.config.pod or f"{self.config.model_name}-emulator-{self._port}"

    @property
    def namespace(self) -> str:
        return self.config.namespace

    @property
    def ready(self) -> bool:
        return self._loaded.is_set()

    async def wait_ready(self, timeout_s: float | None = None) -> None:
        await asyncio.wait_for(self._loaded.wait(), timeout_s)

    @property
    def batching(self) -> BatchingParams:
        assert self._queue is not None
        return self._queue.params

    def busy_seconds(self) -> float:
        """Cumulative time the emulated accelerator had at least one batch executing."""
        # one device: the queues' busy times never overlap (they share `_device`), so they add up
        return self._busy_offset_s + sum(q.busy_seconds() for q in self._queues.values())

    def model_state(self) -> str:
        """The state of the newest version that is not END (what a single-version status shows)."""
        live = [v for v, st in self._versions.items() if st != "END"]
        return self._versions[max(live)] if live else "END"

    def version_states(self) -> list[tuple[int, str]]:
        """(version, ModelVersionStatus.State name) for every version this replica knows, ascending."""
        return sorted(self._versions.items())

    def serving_version(self, version: int | None = None) -> int | None:
        """The version a Predict goes to: `version` if AVAILABLE, else (None) the newest AVAILABLE one."""
        if version is not None:
            return version if self._versions.get(version) == "AVAILABLE" else None
        avail = [v for v, st in self._versions.items() if st == "AVAILABLE"]
        return max(avail) if avail else None

    # ----------------------------------------------------------------- serving core (REST + gRPC)
    def _on_batch(self, stats: BatchStats) -> None:
        m = self.metrics
        m.wrapped_run_count.inc()
        m.processed_batch_size.observe(float(stats.size))
        for w in stats.queue_waits_s:
            m.queuing_latency.observe(w * 1e6, "batch_threads")

    async def predict(self, model: str, version: str | None, rows: int, *, api: str, entrypoint: str) -> PredictOutcome:
        """Serve one Predict; records request_count (all) and request_latency (OK only)."""
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        outcome = await self._predict(model, version, rows)
        self.metrics.request_count.inc(model, outcome.status)
        if outcome.status == "OK":
            elapsed_us = (loop.time() - t0) * 1e6
            self.metrics.request_latency.observe(elapsed_us, model, api, entrypoint)
            self.metrics.runtime_latency.observe(elapsed_us, model, api, "TF1")
        return outcome

    async def _predict(self, model: str, version: str | None, rows: int) -> PredictOutcome:
        queue = self._queues.get(model)
        wanted = int(version) if version is not None and version.isdigit() else None
        served = self.serving_version(wanted) if version is None or wanted is not None else None
        if queue is None or served is None:
            spec = f"Latest({model})" if version is None else f"Specific({model}, {version})"
            return PredictOutcome("NOT_FOUND", f"Servable not found for request: {spec}")
        if rows < 1:
            return PredictOutcome("INVALID_ARGUMENT", "Request must contain at least one instance")
        self.metrics.input_batch_size.observe(float(rows))
        try:
            await queue.submit(rows)
        except QueueFullError as e:
            return PredictOutcome("UNAVAILABLE", str(e))
        except TaskTooLargeError as e:
            return PredictOutcome("INVALID_ARGUMENT", str(e))
        return PredictOutcome("OK", rows=rows)

    # ----------------------------------------------------------------- REST handlers
    async def _handle_metrics(self, request: web.Request) -> web.Response:
        # TF Serving sets exactly "text/plain" (no charset parameter).
        return web.Response(body=self.metrics.render().encode(), headers={"Content-Type": "text/plain"})

    async def _handle_models(self, request: web.Request) -> web.Response:
        path = request.path
        if request.method == "POST":
            m = _PREDICT_PATH.match(path)
            if m is None or m["verb"] != "predict":
                return _error(404, f"Malformed request: POST {path}")
            return await self._rest_predict(request, m["model"], m["kind"], m["ver"])
        if request.method == "GET":
            m = _MODEL_PATH.match(path)
            if m is None:
                return _error(404, f"Malformed request: GET {path}")
            return self._rest_status(m["model"], m["kind"], m["ver"])
        return _error(405, f"Method {request.method} not allowed")

    async def _rest_predict(self, request: web.Request, model: str, kind: str | None, ver: str | None) -> web.Response:
        body = await request.read()
        try:
            doc = json.loads(body)
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            self.metrics.request_count.inc(model, "INVALID_ARGUMENT")
            return _error(400, f"JSON Parse error: {e}")
        rows, key = _rows_of(doc)
        if rows is None:
            self.metrics.request_count.inc(model, "INVALID_ARGUMENT")
            return _error(400, "Missing 'inputs' or 'instances' key")
        version = ver if kind == "versions" else None
        out = await self.predict(model, version, rows, api="predict", entrypoint="REST")
        if out.status != "OK":
            return _error(HTTP_STATUS.get(out.status, 500), out.message)
        preds = [[float(i % 1000) / 1000.0] for i in range(rows)]
        return web.json_response({"predictions" if key == "instances" else "outputs": preds})

    def _rest_status(self, model: str, kind: str | None, ver: str | None) -> web.Response:
        states = self.version_states()
        if kind == "versions":
            states = [(v, st) for v, st in states if str(v) == ver]
        if model not in self._queues or not states:
            return _error(404, f"Could not find any versions of model {model}")
        # GetModelStatusResponse as JSON: the int64 version as a string; newest first, as the status
        # monitor's version map (std::greater) orders them
        doc = {
            "model_version_status": [
                {"version": str(v), "state": st, "status": {"error_code": "OK", "error_message": ""}}
                for v, st in reversed(states)
            ]
        }
        return web.Response(text=json.dumps(doc, indent=1), content_type="application/json")


def _rows_of(doc: Any) -> tuple[int | None, str]:
    """Number of rows (batch dimension) in a row (`instances`) or columnar (`inputs`) request."""
    if not isinstance(doc, dict):
        return None, ""
    if "instances" in doc:
        inst = doc["instances"]
        return (len(inst) if isinstance(inst, list) else None), "instances"
    if "inputs" in doc:
        inp = doc["inputs"]
        if isinstance(inp, dict):
            first = next(iter(inp.values()), None)
            return (len(first) if isinstance(first, list) else 1), "inputs"
        return (len(inp) if isinstance(inp, list) else 1), "inputs"
    return None, ""


def _error(status: int, message: str) -> web.Response:
    return web.Response(status=status, text=json.dumps({"error": message}), content_type="application/json")
