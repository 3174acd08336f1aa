"""TF Serving's model status, asked of every pod: which versions are START/LOADING/AVAILABLE/UNLOADING/END.

Owns the client side of TF Serving's model-status API and the per-pod memory built on it:
 - REST `GET /v1/models/<name>` (TF Serving "RESTful API" doc, Model status API): a JSON
   `GetModelStatusResponse` (`model_version_status[]` of `version` (int64 as a string), `state`,
   `status.error_code`); 404 `{"error": "Could not find any versions of model ..."}` when no version
   is known -- an answer (nothing serves), not a failure;
 - gRPC `tensorflow.serving.ModelService/GetModelStatus` with the `tfserving` extra
   (`tensorflow_serving.apis.get_model_status_pb2`, imported only when asked: it loads TensorFlow).
States are ModelVersionStatus.State of `tensorflow_serving/apis/get_model_status.proto`.

Every call has a timeout, and one `poll()` waits at most that timeout for all pods together; a pod
that does not answer is *unknown* (its Kubernetes readiness stands, `core.types.ModelStatus`), never
"not serving", so a missing status cannot lower a count. TF Serving starts its HTTP and gRPC servers
only after the initial model load, so a new pod refuses connections until its model is AVAILABLE.

Cold start to AVAILABLE (`ModelStatusTracker`): for a pod first seen not serving (refused, or
answered without an AVAILABLE version), the time from the pod's creation to the poll where it first
answered AVAILABLE, less half the poll interval (it became AVAILABLE between two polls; the error is
at most half a poll period); the median over the target's last `COLD_START_SAMPLES` pods.
"""

from __future__ import annotations

import json
import math
import urllib.error
import urllib.parse
import urllib.request
from collections import deque
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass
from statistics import median
from typing import Any

from autoscaler.core.types import MODEL_STATES, ModelStatus, Signal, SignalStatus, TargetKey

# ModelVersionStatus.State numbers (get_model_status.proto) -> names
STATE_NAMES = {0: "UNKNOWN", 10: "START", 20: "LOADING", 30: "AVAILABLE", 40: "UNLOADING", 50: "END"}
COLD_START_SAMPLES = 20  # measured pods kept per target
MAX_COLD_START_S = 3600.0  # a pod older than this when first seen gives no cold start (a daemon restart)


@dataclass(frozen=True)
class PodModelStatus:
    """One pod's answer: (version, state) pairs, or why there was none (`error` non-empty)."""

    pod: str
    versions: tuple[tuple[int, str], ...] = ()
    error: str = ""

    @property
    def answered(self) -> bool:
        return not self.error

    @property
    def available(self) -> bool:
        return any(st == "AVAILABLE" for _, st in self.versions)


def parse_rest_status(doc: Any) -> tuple[tuple[int, str], ...]:
    """(version, state) pairs of a REST model-status reply; ValueError naming the bad field."""
    if not isinstance(doc, dict) or not isinstance(doc.get("model_version_status"), list):
        raise ValueError(f"model_version_status: expected a list in the reply, got {str(doc)[:120]!r}")
    out = []
    for i, item in enumerate(doc["model_version_status"]):
        if not isinstance(item, dict):
            raise ValueError(f"model_version_status[{i}]: expected an object, got {item!r}")
        try:
            version = int(item.get("version", ""))
        except (TypeError, ValueError):
            got = item.get("version")
            raise ValueError(f"model_version_status[{i}].version: expected an integer, got {got!r}") from None
        state = item.get("state")
        if state not in MODEL_STATES:
            raise ValueError(f"model_version_status[{i}].state: expected one of {MODEL_STATES}, got {state!r}")
        out.append((version, str(state)))
    return tuple(sorted(out))


def fetch_rest(base_url: str, model: str, timeout_s: float) -> tuple[tuple[int, str], ...]:
    """`GET <base_url>/v1/models/<model>`: the versions and their states ((), when none is known)."""
    url = f"{base_url.rstrip('/')}/v1/models/{urllib.parse.quote(model, safe='')}"
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as resp:
            body: bytes = resp.read()
    except urllib.error.HTTPError as e:
        if e.code == 404:  # "Could not find any versions of model": answered, nothing serves
            return ()
        raise
    return parse_rest_status(json.loads(body))


def fetch_grpc(address: str, model: str, timeout_s: float) -> tuple[tuple[int, str], ...]:
    """`ModelService/GetModelStatus` at `host:port` (needs the `tfserving` extra)."""
    import grpc
    from tensorflow_serving.apis import get_model_status_pb2, model_service_pb2_grpc

    with grpc.insecure_channel(address) as channel:
        req = get_model_status_pb2.GetModelStatusRequest()
        req.model_spec.name = model
        try:
            resp = model_service_pb2_grpc.ModelServiceStub(channel).GetModelStatus(req, timeout=timeout_s)
        except grpc.RpcError as e:
            if e.code() is grpc.StatusCode.NOT_FOUND:
                return ()
            raise
    return tuple(sorted((int(s.version), STATE_NAMES.get(int(s.state), "UNKNOWN")) for s in resp.model_version_status))


@dataclass(frozen=True)
class StatusRequest:
    """Ask `pod` of `target` (at `address`: a REST base URL, or host:port for gRPC) for `model`."""

    target: TargetKey
    pod: str
    address: str
    model: str


class ModelStatusPoller:
    """Asks many pods at once; one `poll()` takes at most about `timeout_s`, however many pods hang."""

    def __init__(self, *, timeout_s: float = 1.0, max_workers: int = 64, protocol: str = "rest") -> None:
        if protocol not in ("rest", "grpc"):
            raise ValueError(f"protocol: expected 'rest' or 'grpc', got {protocol!r}")
        if not (math.isfinite(timeout_s) and timeout_s > 0):
            raise ValueError(f"timeout_s: expected a positive number of seconds, got {timeout_s!r}")
        self.timeout_s = timeout_s
        self.protocol = protocol
        self._fetch = fetch_rest if protocol == "rest" else fetch_grpc
        self._pool = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="tfs-status")

    def close(self) -> None:
        self._pool.shutdown(wait=False)

    def poll(self, requests: Sequence[StatusRequest]) -> dict[tuple[TargetKey, str], PodModelStatus]:
        futs = {(r.target, r.pod): self._pool.submit(self._fetch, r.address, r.model, self.timeout_s) for r in requests}
        done, _ = wait(futs.values(), timeout=self.timeout_s + 0.25)  # the calls' own timeouts + slack
        out: dict[tuple[TargetKey, str], PodModelStatus] = {}
        for (key, pod), f in futs.items():
            if f not in done:
                f.cancel()
                out[(key, pod)] = PodModelStatus(pod, error=f"no answer within {self.timeout_s:g} s")
                continue
            try:
                out[(key, pod)] = PodModelStatus(pod, f.result())
            except Exception as e:  # refused, timeout, HTTP 5xx, bad JSON: unknown, never "not serving"
                out[(key, pod)] = PodModelStatus(pod, error=f"{type(e).__name__}: {str(e)[:160]}")
        return out


@dataclass
class _Pod:
    created_s: float | None
    first_seen_s: float
    last_down_s: float | None = None  # the last poll at which it did not serve (never served before)
    served: bool = False


class ModelStatusTracker:
    """Per-pod memory across polls: summaries per target and the cold start to AVAILABLE."""

    def __init__(self) -> None:
        self._pods: dict[tuple[TargetKey, str], _Pod] = {}
        self._cold: dict[TargetKey, deque[float]] = {}

    def update(
        self, key: TargetKey, answers: Mapping[str, tuple[float | None, PodModelStatus]], now_s: float
    ) -> tuple[ModelStatus, Signal]:
        """`answers`: pod -> (creation time, Unix s or None; its status). Pods not listed are forgotten."""
        for gone in [k for k in self._pods if k[0] == key and k[1] not in answers]:
            del self._pods[gone]
        counts: dict[tuple[int, str], int] = {}
        available = unknown = 0
        for pod, (created_s, st) in sorted(answers.items()):
            mem = self._pods.get((key, pod))
            if mem is None:
                mem = self._pods[(key, pod)] = _Pod(created_s, now_s)
            if st.available:
                available += 1
                if not mem.served:
                    self._measure(key, mem, now_s)
                mem.served = True
            elif not mem.served:
                mem.last_down_s = now_s  # refused or loading: not serving yet
            if not st.answered:
                unknown += 1
            for version_state in st.versions:
                counts[version_state] = counts.get(version_state, 0) + 1
        status = ModelStatus(
            pods=len(answers),
            available=available,
            unknown=unknown,
            versions=tuple((v, s, n) for (v, s), n in sorted(counts.items())),
        )
        samples = self._cold.get(key)
        if not samples:
            return status, Signal.missing(SignalStatus.MISSING, "no pod seen going from not serving to AVAILABLE")
        return status, Signal.of(
            median(samples), f"pod created -> model AVAILABLE (TF Serving model status), median of {len(samples)} pods"
        )

    def _measure(self, key: TargetKey, mem: _Pod, now_s: float) -> None:
        if mem.created_s is None or mem.last_down_s is None or mem.first_seen_s - mem.created_s > MAX_COLD_START_S:
            return  # first seen serving (or too old to have been watched starting): no measurement
        cold_s = (mem.last_down_s + now_s) / 2.0 - mem.created_s
        if math.isfinite(cold_s) and cold_s >= 0.0:
            self._cold.setdefault(key, deque(maxlen=COLD_START_SAMPLES)).append(cold_s)
