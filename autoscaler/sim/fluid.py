"""Fluid (per-second) serving: vectorized lookup tables of one replica's steady state over its rate.

Owns the fast fidelity of the simulator. A 7-day replay asks "what does a replica do at this
rate?" 600 k times per policy, so this module tabulates the answers once per batching
configuration on a per-replica rate grid and answers whole arrays of seconds with `np.interp`.
The answers are the simulated server's truth, measured with the exact batch-queue DES under
Poisson arrivals (`sim/truth.py`) — never the controller's own analytic model, so a policy meets
the model error it would meet in a cluster. `truth="analytic"` tabulates `core/capacity.py`
instead (no model error for the policy to meet; for comparisons and tests). A second without backlog is a steady
state at that second's rate (queueing within the second is in the tables). Overload is not: once a
replica's rate exceeds its max throughput the excess queues in TF Serving's batch queue (up to
max_enqueued_batches x max_batch_size requests; beyond it requests are rejected, as TF Serving's
`BatchResource` rejects when the queue is full) and drains for seconds after the load drops, so
`backlog_scan` carries that queue from second to second (a fluid queue: the backlog is served
first, each request waits behind it). `tests/test_sim_fidelity.py` bounds both against the
request-level DES.

Also owns the run-level latency distribution: a 2-D table P(latency ≤ x | per-replica rate)
mixed with the arrival-weighted rate histogram gives the exact (to grid resolution) p50/p95/p99
over all requests of a replay.
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass

import numpy as np

from autoscaler.core.capacity import CapacityModel, histogram_quantile_ms, overload_latency_s
from autoscaler.core.types import FloatArray
from autoscaler.sim.truth import TruthColumns, des_columns
from autoscaler.spec.types import SLO, BatchingParams

RATE_POINTS = 400  # the analytic truth's grid (the DES truth's is `sim.truth.RATE_POINTS`)
CDF_RATE_POINTS = 160
TOP_FRACTION = 1.25  # tables reach 1.25 x the max throughput; beyond, the excess is rejected
LATENCY_GRID_MS = np.geomspace(0.5, 120_000.0, 140)
LATENCY_CAP_MS = 120_000.0  # overloaded replicas report this instead of infinity
REPORT_QUANTILES = (0.5, 0.95, 0.99)


def _finite(x: float) -> float:
    return x if math.isfinite(x) else LATENCY_CAP_MS


@dataclass(frozen=True)
class SecondOutcome:
    """Per-second outcome arrays of one fluid segment (all the same length)."""

    served: FloatArray
    rejected: FloatArray
    within_slo: FloatArray  # requests served within the SLO latency
    latency_q_ms: FloatArray  # latency at the SLO quantile
    p50_ms: FloatArray
    p99_ms: FloatArray
    mean_latency_ms: FloatArray
    busy: FloatArray  # busy fraction of the ready pods
    mean_batch: FloatArray


TRUTHS = ("des", "analytic")


def analytic_columns(model: CapacityModel, params: BatchingParams, slo: SLO) -> TruthColumns:
    """The columns from the controller's own analytic model (`truth="analytic"`): a simulated server
    that behaves exactly as the controller predicts; for the replay-speed comparison and tests."""
    top = TOP_FRACTION * model.max_throughput_rps(params)
    r = np.linspace(0.0, top, RATE_POINTS)
    ms = slo.latency_ms
    q = slo.latency_quantile
    points = [model.steady(x, params) for x in r]  # one steady state per rate, read for every column
    rejected = np.array([p.rejected for p in points])
    # what TF Serving's histogram shows: latency of *served* requests only (rejections are not
    # recorded); an overloaded replica serves what gets through a full batch queue (the model's formula)
    full_queue_ms = 1000.0 * overload_latency_s(
        model.service.s(params.max_batch_size), params.max_enqueued_batches, model.service.servers(params)
    )

    def served_quantile(rate: float, rej: float) -> float:
        v = model.latency_quantile_ms(rate, params, min(q * (1.0 - rej), 0.999999))
        return min(v, full_queue_ms) if math.isfinite(v) else full_queue_ms

    def reported_quantile(rate: float, rej: float, served: float) -> float:
        if rej > 1e-9:  # a rejecting replica: the served latency through the full queue
            return served
        v = histogram_quantile_ms(model, rate, params, q)
        return v if math.isfinite(v) else served

    lat_q_served = np.array([served_quantile(x, rej) for x, rej in zip(r, rejected, strict=True)])
    cr = np.linspace(0.0, top, CDF_RATE_POINTS)
    return TruthColumns(
        rates=r,
        within=np.array([model.fraction_within(x, params, ms) for x in r]),
        rejected=rejected,
        busy=np.array([p.utilization for p in points]),
        batch=np.array([p.batch_size for p in points]),
        mean_ms=np.array([_finite(p.mean_latency_s() * 1000.0) for p in points]),
        lat_q=np.array([_finite(model.latency_quantile_ms(x, params, q)) for x in r]),
        p50=np.array([_finite(model.latency_quantile_ms(x, params, 0.5)) for x in r]),
        p99=np.array([_finite(model.latency_quantile_ms(x, params, 0.99)) for x in r]),
        lat_q_served=lat_q_served,
        # what the daemon reads from Prometheus: histogram_quantile over TF Serving's buckets
        # (interpolated inside a 1.8x-wide bucket), so calibration sees the same bias as in a cluster
        lat_q_reported=np.array(
            [reported_quantile(x, rej, sv) for x, rej, sv in zip(r, rejected, lat_q_served, strict=True)]
        ),
        cdf=np.array([[model.fraction_within(x, params, float(lat)) for lat in LATENCY_GRID_MS] for x in cr]),
        cdf_rates=cr,
    )


class RateTable:
    """Per-replica quantities of one batching configuration, tabulated over the rate.

    `truth="des"` (default) measures them with the exact batch-queue DES at `model.service`
    (`sim/truth.py`): the profile times `model.service_scale`, the simulated replicas' real speed.
    `truth="analytic"` reads them from `model` itself (the controller's planning model).
    """

    def __init__(self, model: CapacityModel, params: BatchingParams, slo: SLO, truth: str = "des") -> None:
        if truth not in TRUTHS:
            raise ValueError(f"truth: expected one of {', '.join(TRUTHS)} (got {truth!r})")
        self.params = params
        self.slo = slo
        self.truth = truth
        self.mu_rps = model.max_throughput_rps(params)
        if truth == "des":
            cols = des_columns(model.service, params, slo, LATENCY_GRID_MS, LATENCY_CAP_MS)
        else:
            cols = analytic_columns(model, params, slo)
        r = cols.rates
        self.rates = r
        self.top_rps = float(r[-1])
        self.within = cols.within
        self.rejected = cols.rejected
        self._rates_list: list[float] = self.rates.tolist()
        self._rejected_list: list[float] = self.rejected.tolist()
        self.busy = cols.busy
        self.batch = cols.batch
        self.mean_ms = cols.mean_ms
        self.lat_q = cols.lat_q
        self.lat_q_served = cols.lat_q_served
        self.lat_q_reported = cols.lat_q_reported
        self._mean_list: list[float] = self.mean_ms.tolist()
        self._point_lists: tuple[list[float], ...] = (
            self.lat_q_reported.tolist(), self._mean_list, self.batch.tolist(), self.busy.tolist(),
        )  # fmt: skip
        self.p50 = cols.p50
        self.p99 = cols.p99
        self.service_ms_at_batch = np.array([model.service.ms(b) for b in self.batch])
        # the carried backlog (`backlog_scan`): a saturated replica serves full batches
        self.full_batch_ms = float(model.service.ms(params.max_batch_size))
        self.queue_cap = float(params.max_enqueued_batches * params.max_batch_size)
        # run-level CDF table (the analytic truth uses a coarser rate grid than its columns)
        self.cdf_rates = cols.cdf_rates
        self.cdf = cols.cdf

    def rejected_count(self, arrivals: FloatArray, ready: FloatArray) -> FloatArray:
        """Requests rejected per second (the only per-tick quantity the metrics need live)."""
        n = np.maximum(ready, 1.0)
        r = arrivals / n
        f = np.interp(r, self.rates, self.rejected)
        over = r > self.top_rps
        if over.any():
            f = np.where(over, 1.0 - (1.0 - self.rejected[-1]) * self.top_rps / np.maximum(r, 1e-12), f)
        out: FloatArray = np.where(ready <= 0, arrivals, arrivals * f)
        return out

    def rejected_one(self, arrivals: float, ready: float) -> float:
        """`rejected_count` for one second, without numpy: the same operations as np.interp
        (numpy's `arr_interp`), so the result is bit-identical (tested)."""
        if ready <= 0:
            return arrivals
        r = arrivals / (ready if ready > 1.0 else 1.0)
        ys = self._rejected_list
        if r > self.top_rps:
            f = 1.0 - (1.0 - ys[-1]) * self.top_rps / (r if r > 1e-12 else 1e-12)
        else:
            f = interp_one(r, self._rates_list, ys)
        return arrivals * f

    def _at(self, per_replica_rps: float) -> tuple[int, float]:
        """Grid cell and weight of a rate on the (uniform) rate grid, clamped to [0, top]."""
        r = min(max(per_replica_rps, 0.0), self.top_rps)
        x = self._rates_list
        j = min(int(r / (x[1] - x[0])), len(x) - 2)
        return j, (r - x[j]) / (x[j + 1] - x[j])

    def point(self, per_replica_rps: float) -> tuple[float, float, float, float]:
        """(latency at the SLO quantile as histogram_quantile reports it, ms; mean latency ms; mean batch;
        busy) at one rate. Plain floats: the metrics pipeline asks once per tick."""
        j, w = self._at(per_replica_rps)
        lat, mean, batch, busy = (a[j] + (a[j + 1] - a[j]) * w for a in self._point_lists)
        return lat, mean, batch, busy

    def mean_ms_at(self, per_replica_rps: float) -> float:
        """`point(r)[1]` alone (the in-flight signal needs it every second); `_at` inlined."""
        r = min(max(per_replica_rps, 0.0), self.top_rps)
        x = self._rates_list
        j = min(int(r / (x[1] - x[0])), len(x) - 2)
        w = (r - x[j]) / (x[j + 1] - x[j])
        a = self._mean_list
        return a[j] + (a[j + 1] - a[j]) * w

    def outcome(self, arrivals: FloatArray, ready: FloatArray) -> SecondOutcome:
        """Serve `arrivals[i]` requests in second i on `ready[i]` identical replicas."""
        n = np.maximum(ready, 1.0)
        r = arrivals / n
        over = r > self.top_rps
        rc = np.minimum(r, self.top_rps)
        rej_f = np.interp(rc, self.rates, self.rejected)
        within_f = np.interp(rc, self.rates, self.within)
        if over.any():
            # beyond the table: throughput is capped at mu, the excess is rejected
            scale = np.where(over, self.top_rps / np.maximum(r, 1e-12), 1.0)
            within_f = within_f * scale
            rej_f = np.where(over, 1.0 - (1.0 - rej_f) * scale, rej_f)
        none = ready <= 0
        if none.any():
            rej_f = np.where(none, 1.0, rej_f)
            within_f = np.where(none, 0.0, within_f)
        rejected = arrivals * rej_f
        nan = np.where(none, np.nan, 0.0)
        return SecondOutcome(
            served=arrivals - rejected,
            rejected=rejected,
            within_slo=arrivals * within_f,
            latency_q_ms=np.interp(rc, self.rates, self.lat_q) + nan,
            p50_ms=np.interp(rc, self.rates, self.p50) + nan,
            p99_ms=np.interp(rc, self.rates, self.p99) + nan,
            mean_latency_ms=np.interp(rc, self.rates, self.mean_ms) + nan,
            busy=np.where(none, 0.0, np.interp(rc, self.rates, self.busy)),
            mean_batch=np.interp(rc, self.rates, self.batch) + nan,
        )

    def cdf_weights(self, per_replica_rps: FloatArray, weights: FloatArray) -> FloatArray:
        """Arrival weights spread linearly onto the CDF rate grid (for the run-level CDF)."""
        grid = self.cdf_rates
        step = grid[1] - grid[0]
        x = np.clip(per_replica_rps, 0.0, grid[-1]) / step
        i0 = np.minimum(np.floor(x).astype(np.int64), len(grid) - 2)
        frac = x - i0
        w = np.zeros(len(grid))
        np.add.at(w, i0, weights * (1.0 - frac))
        np.add.at(w, i0 + 1, weights * frac)
        return w

    def run_cdf(self, grid_weights: FloatArray) -> FloatArray:
        """P(latency ≤ LATENCY_GRID_MS[j]) mixed over the weights (unnormalized)."""
        out: FloatArray = grid_weights @ self.cdf
        return out


@dataclass
class BacklogSeconds:
    """The seconds of one span served as a fluid queue (`backlog_scan`): span-relative index, requests
    rejected, and the latency (ms) of the first and the last accepted request (the queue ahead of an
    arrival grows or shrinks linearly across the second, so latencies are uniform between the two)."""

    idx: list[int]
    rejected: list[float]
    lat0_ms: list[float]
    lat1_ms: list[float]
    backlog_end: list[float]  # requests queued (all replicas) at the end of the second


def backlog_scan(
    table: RateTable, arrivals: list[float], ready: list[float], over: list[int], backlog0: float
) -> BacklogSeconds:
    """Carry the batch-queue backlog across the seconds of one span (plain floats: a sequential scan).

    `over`: sorted span-relative indices of the seconds whose per-replica rate exceeds `table.mu_rps`
    (the only seconds where a backlog can start); `backlog0`: requests queued at the span's start.
    A second with a backlog (or over capacity) serves the backlog first at the max throughput, queues
    the excess of its arrivals up to the queue capacity and rejects the rest; a second without one is
    left to the steady-state tables. A backlog under one batch per replica clears within a batch time
    and is dropped. Every quantity is per replica times the ready count, so a change of the ready
    count spreads the backlog over the replicas that remain (those removed take their share with them).
    """
    mu = table.mu_rps
    cap = table.queue_cap
    drop = float(table.params.max_batch_size)
    ms_per_req = 1000.0 / mu
    svc = table.full_batch_ms
    out = BacklogSeconds([], [], [], [], [])
    b_total = backlog0
    i, n_s, k = 0, len(arrivals), 0
    while i < n_s:
        if b_total <= 0.0:  # jump to the next second over capacity
            while k < len(over) and over[k] < i:
                k += 1
            if k == len(over):
                break
            i = over[k]
        ready_i = ready[i]
        if ready_i <= 0:  # no replica: the queue is gone, the table rejects every arrival
            b_total = 0.0
            i += 1
            continue
        n = ready_i if ready_i > 1.0 else 1.0
        r = arrivals[i] / n
        q0 = min(b_total / n, cap)  # fewer replicas: those removed took their queue (bounds rej by r)
        q1 = q0 + r - mu
        if r <= mu and q0 < drop:
            b_total = 0.0
            continue  # the steady state serves this second (i is revisited with no backlog)
        rej = 0.0
        if q1 > cap:
            rej, q1 = q1 - cap, cap
        elif q1 < 0.0:
            q1 = 0.0
        out.idx.append(i)
        out.rejected.append(rej * n)
        out.lat0_ms.append(q0 * ms_per_req + svc)
        out.lat1_ms.append(q1 * ms_per_req + svc)
        b_total = q1 * n
        out.backlog_end.append(b_total)
        i += 1
    return out


def uniform_cdf(lat0_ms: FloatArray, lat1_ms: FloatArray, x_ms: FloatArray) -> FloatArray:
    """P(latency ≤ x) for latencies uniform between lat0 and lat1 (either order); rows × x."""
    lo = np.minimum(lat0_ms, lat1_ms)[:, None]
    width = np.abs(lat1_ms - lat0_ms)[:, None]
    x = np.asarray(x_ms, dtype=np.float64)[None, :]
    out: FloatArray = np.where(width > 0, np.clip((x - lo) / np.maximum(width, 1e-12), 0.0, 1.0), x >= lo)
    return out


def interp_one(x: float, xs: list[float], ys: list[float]) -> float:
    """`np.interp(x, xs, ys)` for one value, without numpy: the same operations as numpy's
    `arr_interp` (x below/above the grid takes the end values, NaN stays NaN), so the result is
    bit-identical."""
    if x != x:
        return x
    j = bisect.bisect_right(xs, x) - 1
    if j < 0:
        return ys[0]
    if j >= len(xs) - 1 or xs[j] == x:
        return ys[j]
    slope = (ys[j + 1] - ys[j]) / (xs[j + 1] - xs[j])
    f = slope * (x - xs[j]) + ys[j]
    if math.isnan(f):
        f = slope * (x - xs[j + 1]) + ys[j + 1]
        if math.isnan(f) and ys[j] == ys[j + 1]:
            f = ys[j]
    return f


_TABLES: dict[tuple[object, ...], RateTable] = {}
_MAX_TABLES = 64  # a sweep's batching grid fits; the oldest table goes first


def rate_table(model: CapacityModel, params: BatchingParams, slo: SLO, truth: str = "des") -> RateTable:
    """Cached per (profile, service scale, params, SLO, truth): a table solves every point of the rate
    grid (a DES run per point for `truth="des"`, `sim/truth.py`), too costly to rebuild per replay."""
    key = (model.profile, model.service_scale, params, slo, truth)
    hit = _TABLES.get(key)
    if hit is None:
        hit = RateTable(model, params, slo, truth)
        if len(_TABLES) >= _MAX_TABLES:
            del _TABLES[next(iter(_TABLES))]
        _TABLES[key] = hit
    return hit


def quantiles_from_cdf(cdf: FloatArray, total: float, qs: tuple[float, ...]) -> list[float]:
    """Invert a run-level CDF over LATENCY_GRID_MS (log-linear); inf if the quantile is never reached."""
    out: list[float] = []
    if total <= 0:
        return [math.nan for _ in qs]
    frac = np.maximum.accumulate(cdf / total)
    logx = np.log(LATENCY_GRID_MS)
    for q in qs:
        if frac[-1] < q:
            out.append(math.inf)
            continue
        j = int(np.searchsorted(frac, q, side="left"))
        if j == 0:
            out.append(float(LATENCY_GRID_MS[0]))
            continue
        f0, f1 = frac[j - 1], frac[j]
        w = 0.0 if f1 <= f0 else (q - f0) / (f1 - f0)
        out.append(float(math.exp(logx[j - 1] + w * (logx[j] - logx[j - 1]))))
    return out
