"""Value types of the decision core: what goes into `decide()` and what comes out.

Owned here because every shell (daemon, simulator, demo) and every plug-in (sources,
forecasters, actuators, adapter) speaks them. Pure stdlib + numpy. A missing signal is a
`Signal` with a non-OK status, never a zero: the core must be able to tell "no load" from
"no data" (docs/design.md, safety rule 5).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import Enum
from functools import lru_cache
from statistics import NormalDist

import numpy as np
import numpy.typing as npt

from autoscaler.spec.types import BatchingParams

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True, order=True)
class TargetKey:
    """Identity of one autoscaled target: the Deployment serving a TF Serving model."""

    namespace: str
    deployment: str

    def __str__(self) -> str:
        return f"{self.namespace}/{self.deployment}"


class SignalStatus(str, Enum):
    OK = "ok"
    MISSING = "missing"  # query answered with no series
    STALE = "stale"  # newest sample too old
    NAN = "nan"  # NaN / Inf value (e.g. rate over a counter reset, 0/0 ratio)
    ERROR = "error"  # the query itself failed (down, timeout, bad response)


@dataclass(frozen=True)
class Signal:
    """One observed value with its provenance. `value` is None unless status is OK."""

    value: float | None
    status: SignalStatus = SignalStatus.OK
    detail: str = ""

    @staticmethod
    def of(value: float | None, detail: str = "") -> Signal:
        """An OK signal, or NAN/MISSING if the value is not a finite number."""
        if value is None:
            return Signal(None, SignalStatus.MISSING, detail or "no value")
        if not math.isfinite(value):
            return Signal(None, SignalStatus.NAN, detail or f"non-finite value {value!r}")
        return Signal(float(value), SignalStatus.OK, detail)

    @staticmethod
    def missing(status: SignalStatus, detail: str) -> Signal:
        assert status is not SignalStatus.OK
        return Signal(None, status, detail)

    @property
    def ok(self) -> bool:
        return self.status is SignalStatus.OK and self.value is not None


MISSING = Signal(None, SignalStatus.MISSING, "not observed")

# TF Serving's ModelVersionStatus.State (tensorflow_serving/apis/get_model_status.proto): a version
# is START when the manager first hears of it, LOADING while its SavedModel loads and warms up,
# AVAILABLE while it serves, UNLOADING and END once a newer version (or a config change) retires it.
MODEL_STATES = ("UNKNOWN", "START", "LOADING", "AVAILABLE", "UNLOADING", "END")
_LIVE_STATES = frozenset(("START", "LOADING", "AVAILABLE", "UNLOADING"))


@dataclass(frozen=True)
class ModelStatus:
    """TF Serving's model status (REST `GET /v1/models/<m>`, gRPC `GetModelStatus`) over one target's pods.

    `available` pods have some version of the model AVAILABLE; `unknown` pods did not answer (timeout,
    refused, bad reply), so their Kubernetes readiness stands: a missing status can lower the ready count
    no further than Kubernetes does, and never lowers a replica count (docs/design.md safety rule 5).
    `versions` is (version, state, pods in that state), sorted.
    """

    pods: int
    available: int
    unknown: int = 0
    versions: tuple[tuple[int, str, int], ...] = ()

    @property
    def ready_bound(self) -> int:
        """At most this many pods serve the model (answered AVAILABLE, or did not answer)."""
        return self.available + self.unknown

    @property
    def live_versions(self) -> tuple[int, ...]:
        """Versions loading, serving or unloading on some pod (END and UNKNOWN excluded)."""
        return tuple(sorted({v for v, st, _ in self.versions if st in _LIVE_STATES}))

    @property
    def rollout(self) -> bool:
        """Two versions live at once: TF Serving is moving from one version to the next."""
        return len(self.live_versions) >= 2

    def text(self) -> str:
        """'v1 AVAILABLE on 3 pods, v2 LOADING on 1 pod' (+ pods without an answer)."""
        parts = [f"v{v} {st} on {n} pod{'s' if n != 1 else ''}" for v, st, n in self.versions]
        if self.unknown:
            parts.append(f"{self.unknown} of {self.pods} pods did not answer")
        return ", ".join(parts) or f"no version of the model on {self.pods} pods"


def finite_nonneg(sig: Signal) -> float | None:
    """The signal's value when it is OK, finite and >= 0, else None (read ~9 times a tick)."""
    value = sig.value
    if value is None or sig.status is not SignalStatus.OK or not 0.0 <= value < math.inf:  # NaN fails too
        return None
    return float(value)


def fmt_rps(x: float) -> str:
    """A rate for a human: whole requests/s from 10 up, three significant digits below."""
    return f"{x:.0f}" if abs(x) >= 10 else f"{x:.3g}"


@dataclass(frozen=True)
class Observation:
    """What the sources saw for one target at one tick. Rates are requests/s for the whole target."""

    time_s: float
    request_rate_rps: Signal = MISSING  # OK responses/s over the rate window (~1 m)
    burst_rate_rps: Signal = MISSING  # arrivals/s over the short burst window (~10 s)
    error_rate_rps: Signal = MISSING  # non-OK, non-UNAVAILABLE responses/s
    rejected_rps: Signal = MISSING  # UNAVAILABLE (batch queue full) responses/s
    latency_ms: Signal = MISSING  # latency at the SLO quantile, milliseconds
    slo_attainment: Signal = MISSING  # fraction of requests within the SLO latency (from the histogram)
    queue_latency_ms: Signal = MISSING  # mean batching-queue wait, milliseconds
    mean_batch_size: Signal = MISSING  # mean processed batch size
    gpu_util: Signal = MISSING  # busy fraction 0..1 averaged over ready pods
    cold_start_s: Signal = MISSING  # measured pod start -> ready (model load + warmup)
    current_replicas: int | None = None  # Deployment spec.replicas
    ready_replicas: int | None = None
    pending_replicas: int | None = None  # created but not ready
    model_status: ModelStatus | None = None  # TF Serving's model status per pod; None = not asked
    # multi-model servers: offered load (OK + UNAVAILABLE responses/s) per model name, the mix the
    # pod's capacity is shared by (core/multimodel.py); () for a single model or when unknown
    model_rates_rps: tuple[tuple[str, float], ...] = ()

    @property
    def arrival_rps(self) -> Signal:
        """Offered load: served + rejected (rejections are demand we failed to serve)."""
        if not self.request_rate_rps.ok:
            return self.request_rate_rps
        rej = self.rejected_rps.value if self.rejected_rps.ok else 0.0
        assert self.request_rate_rps.value is not None
        return Signal(self.request_rate_rps.value + (rej or 0.0))


_STD_NORMAL = NormalDist()


@lru_cache(maxsize=64)
def normal_quantile(q: float) -> float:
    """Standard normal quantile (memoized: the same few levels are asked every tick)."""
    return _STD_NORMAL.inv_cdf(q)


@dataclass(frozen=True)
class Forecast:
    """Load forecast in requests/s: `mean[i]` is the mean rate over step i+1 after `origin_s`.

    `lo`/`hi` bound the central interval of probability `level`. Quantiles in between
    are read from a normal approximation of the predictive distribution.
    """

    origin_s: float
    step_s: float
    mean: FloatArray
    lo: FloatArray
    hi: FloatArray
    level: float
    model: str
    note: str = ""
    # surge reserve (core/surge.py): surge[k-1] = how far the load may climb over k steps above the
    # recent peak, learned from the history at the SLO's miss budget; () = not learned
    surge: tuple[float, ...] = ()
    surge_cap_rps: float | None = None  # the surge reserve never provisions above the history's peak load
    surge_learned: bool = True  # False: too little history yet, `surge` is core.surge.SURGE_PRIOR_RATIO
    # peak_step's answers per (steps, quantile): the forecast driver hands the same forecast to every
    # tick of one step, so each is computed once (a memo of a pure function, not state)
    _peaks: dict[tuple[int, int, float], tuple[float, int]] = field(
        init=False, repr=False, compare=False, default_factory=dict
    )

    def __post_init__(self) -> None:
        n = len(self.mean)
        if len(self.lo) != n or len(self.hi) != n:
            raise ValueError("forecast mean, lo and hi must have the same length")
        if not 0.0 < self.level < 1.0:
            raise ValueError(f"forecast level must be in (0, 1), got {self.level}")

    @property
    def horizon(self) -> int:
        return len(self.mean)

    def sigma(self) -> FloatArray:
        z = normal_quantile(0.5 + self.level / 2.0)
        return np.maximum((self.hi - self.lo) / (2.0 * z), 0.0)

    def quantile(self, q: float) -> FloatArray:
        """Per-step q-quantile of the rate (clipped at 0)."""
        if not 0.0 < q < 1.0:
            raise ValueError(f"quantile must be in (0, 1), got {q}")
        return np.maximum(self.mean + normal_quantile(q) * self.sigma(), 0.0)

    def peak_step(self, start_s: float, end_s: float, q: float) -> tuple[float, int] | None:
        """Highest q-quantile over the steps overlapping [start_s, end_s] after origin, and its step
        index; None if no step overlaps. A non-finite quantile is returned as soon as it is met.

        `quantile(q)` for the few steps of a lead time, in plain floats (the same IEEE operations
        as the array expression, so the same values; the decision core asks every tick), memoized per
        (steps, q) on the forecast, which the forecast driver reuses for every tick of one step.
        """
        if not 0.0 < q < 1.0:
            raise ValueError(f"quantile must be in (0, 1), got {q}")
        lo_i = max(0, math.floor((start_s - self.origin_s) / self.step_s))
        hi_i = min(self.horizon, math.ceil((end_s - self.origin_s) / self.step_s))
        if hi_i <= lo_i:
            return None
        key = (lo_i, hi_i, q)
        hit = self._peaks.get(key)
        if hit is None:
            hit = self._peak_step(lo_i, hi_i, q)
            self._peaks[key] = hit
        return hit

    def _peak_step(self, lo_i: int, hi_i: int, q: float) -> tuple[float, int]:
        z, two_z_level = normal_quantile(q), 2.0 * normal_quantile(0.5 + self.level / 2.0)
        mean, lo, hi = self.mean, self.lo, self.hi
        peak, at = -math.inf, lo_i
        for k in range(lo_i, hi_i):
            v = max(float(mean[k]) + z * max((float(hi[k]) - float(lo[k])) / two_z_level, 0.0), 0.0)
            if not math.isfinite(v):
                return v, k
            if v > peak:
                peak, at = v, k
        return peak, at

    def peak_over(self, start_s: float, end_s: float, q: float) -> float | None:
        """Highest q-quantile over steps overlapping [start_s, end_s] after origin; None if none."""
        found = self.peak_step(start_s, end_s, q)
        return None if found is None else found[0]


class Binding(str, Enum):
    """The constraint that decided the final replica count."""

    NONE = "none"  # the policy's own recommendation went through
    MIN = "min-replicas"
    MAX = "max-replicas"
    SCALE_UP_LIMIT = "scale-up-limit"
    SCALE_DOWN_LIMIT = "scale-down-limit"
    STABILIZATION = "stabilization"
    HOLD_MISSING_DATA = "hold-missing-data"
    PENDING_PODS = "pending-pods"
    SCALE_IN_GUARD = "scale-in-needs-observed-load"
    REACTIVE_FLOOR = "reactive-floor"
    SURGE_RESERVE = "surge-reserve"
    PANIC = "panic"
    GPU_SATURATION = "gpu-saturation"  # GPU busier than the capacity model explains: no scale-down


@dataclass(frozen=True)
class Proposal:
    """One signal's replica recommendation, before the constraints."""

    signal: str  # e.g. "forecast", "observed", "burst", "latency"
    replicas: int
    load_rps: float | None = None
    detail: str = ""


@dataclass(frozen=True)
class Decision:
    """The outcome of one `decide()` call, with everything needed to explain it."""

    target: TargetKey
    time_s: float
    desired_replicas: int
    current_replicas: int
    valid: bool
    reason: str
    binding: Binding
    batching: BatchingParams
    batching_changed: bool = False
    proposals: tuple[Proposal, ...] = ()
    observed_rps: float | None = None
    forecast_rps: float | None = None  # the forecast load provisioned for (quantile over lead time)
    forecast_lo_rps: float | None = None
    forecast_hi_rps: float | None = None
    forecast_model: str | None = None
    capacity_rps: float | None = None  # per-replica capacity at the SLO
    lead_time_s: float | None = None
    panic: bool = False
    notes: tuple[str, ...] = field(default=())
    gpu_util: float | None = None  # observed GPU busy fraction (DCGM), mean over ready pods
    gpu_util_model: float | None = None  # what the calibrated capacity model predicts at the observed rate
    model_ready_replicas: int | None = None  # replicas counted as ready capacity (model AVAILABLE)
    model_versions: str = ""  # the model status summary ('' = not asked); names a version rollout
