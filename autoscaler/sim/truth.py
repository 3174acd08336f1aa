"""The simulated server's truth: per-replica steady states measured with the exact batch-queue DES.

Owns what a simulated TF Serving replica *really* does at a given request rate, for the fluid
fidelity (`sim/fluid.py`). The controller plans with the analytic `core.capacity.CapacityModel`;
if the simulator served from that same model, a policy would never meet a model error it has
to survive in a cluster. So the fluid tables are measured here from
`core.batchqueue.simulate_replica` (TF Serving's `SharedBatchScheduler` rules, request by
request) under Poisson arrivals, once per (profile, service scale, batching parameters, SLO), on
a uniform per-replica rate grid from 0 to 1.25 × the maximum throughput.

Measurement design (the numbers are in the tests and the commit that introduced this module):

* **Common random numbers.** Every rate point replays the same unit-rate Poisson sequence
  (seeded, `SEED`) stretched to its rate, so neighbouring points share their noise: the tables are
  smooth and (nearly) monotone in the rate, and two builds are bit-identical.
* **Simulated time, not a fixed count.** A point simulates `SIM_SECONDS` of traffic, clipped to
  [`MIN_REQUESTS`, `MAX_REQUESTS`] requests. Near capacity — where the SLO tail lives — that is
  ~300 k requests (≥ 300 beyond a p99.9); at low rates the latency has no queueing tail and
  fewer requests describe it. The tail near capacity comes from rare queue build-ups lasting
  seconds, so its estimate is noisier than the request count suggests: the miss fraction at the
  knee has ~10-15 % relative spread between seeds at this length (4× longer: ~8 %), which is the
  same order as the day-to-day spread of a real replica; the table is one fixed draw of it.
* **Warm-up.** The replica starts empty; the first `WARMUP_FRACTION` of requests (at least
  `WARMUP_MIN_S` seconds) only fill the queue and are not measured.
* Rate 0 is the limit of a lone request: it waits the batch timeout, then S(1).

Columns (per rate, as `sim.fluid.RateTable` reads them): fraction of arrivals within the SLO
latency (rejected = miss), rejected fraction, busy fraction of the parallel servers, mean batch
size (per batch), mean latency of served requests, latency at the SLO quantile, p50 and p99 over
arrivals (rejected = infinitely late, reported as `latency_cap_ms`), the SLO quantile over
*served* requests, that quantile as Prometheus' `histogram_quantile` over TF Serving's latency
buckets reports it, and the latency CDF over arrivals on a fixed latency grid (run-level
quantiles).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from autoscaler.core.batchqueue import simulate_replica
from autoscaler.core.capacity import TF_LATENCY_BUCKETS_MS, ServiceTime, validate_params
from autoscaler.core.types import FloatArray
from autoscaler.spec.types import SLO, BatchingParams

RATE_POINTS = 64  # uniform grid 0 .. 1.25 x max throughput: 2 % of it per step
TOP_FRACTION = 1.25
BASE_REQUESTS = 40_000  # every point: p99.9 from 40 requests beyond it (low rates need no more)
SIM_SECONDS = 800.0  # points whose base run misses the SLO: this much simulated traffic ...
MAX_REQUESTS = 400_000  # ... clipped to [BASE_REQUESTS, this]
OVERLOAD = 1.02  # from this multiple of the max throughput on, the queue is full: fill it, then measure
WARMUP_FRACTION = 0.05  # of an unsaturated run, at least WARMUP_MIN_S, is not measured
WARMUP_MIN_S = 5.0
SEED = 20_250_612

_BUCKETS_MS = np.asarray(TF_LATENCY_BUCKETS_MS)


@dataclass(frozen=True)
class TruthColumns:
    """Per-replica steady-state quantities on `rates` (all 1-D of its length; `cdf` is rates × grid)."""

    rates: FloatArray  # uniform, from 0
    within: FloatArray
    rejected: FloatArray
    busy: FloatArray
    batch: FloatArray
    mean_ms: FloatArray
    lat_q: FloatArray
    p50: FloatArray
    p99: FloatArray
    lat_q_served: FloatArray
    lat_q_reported: FloatArray
    cdf: FloatArray
    cdf_rates: FloatArray  # the rates of `cdf`'s rows (uniform, from 0)


def histogram_quantile_from_ms(sorted_ms: FloatArray, q: float) -> float:
    """Prometheus `histogram_quantile(q, ...)` over TF Serving's latency buckets of these (sorted,
    finite) latencies: linear inside the bucket holding the quantile, from 0 in the first bucket;
    beyond the last finite bucket, its upper bound (promql/quantile.go, `bucketQuantile`)."""
    n = len(sorted_ms)
    if n == 0:
        return math.nan
    cum = np.searchsorted(sorted_ms, _BUCKETS_MS, side="right").astype(np.float64)
    rank = q * n
    above = np.flatnonzero(cum >= rank)
    if not above.size:
        return float(_BUCKETS_MS[-1])
    i = int(above[0])
    lo, lo_n = (float(_BUCKETS_MS[i - 1]), float(cum[i - 1])) if i > 0 else (0.0, 0.0)
    width = float(cum[i]) - lo_n
    return lo + (float(_BUCKETS_MS[i]) - lo) * (rank - lo_n) / width if width > 0.0 else lo


def _unit_arrivals(n: int) -> FloatArray:
    """The shared unit-rate Poisson arrival sequence (common random numbers across rates)."""
    out: FloatArray = np.cumsum(np.random.default_rng(SEED).exponential(1.0, n))
    return out


def measure(
    arrivals_s: FloatArray,
    params: BatchingParams,
    service: ServiceTime,
    slo: SLO,
    latency_grid_ms: FloatArray,
    latency_cap_ms: float,
    warmup_s: float,
) -> tuple[list[float], FloatArray]:
    """One rate point: run the DES on `arrivals_s`, measure the requests after `warmup_s` (at most
    half of them are dropped). Returns the scalar columns in `TruthColumns` order (within ..
    lat_q_reported) and the CDF row over `latency_grid_ms`."""
    run = simulate_replica(arrivals_s, params, service)
    n_all = len(arrivals_s)
    k = min(int(np.searchsorted(arrivals_s, float(arrivals_s[0]) + warmup_s, side="left")), n_all // 2)
    rej = run.rejected[k:]
    lat = run.latency_ms[k:]
    n = len(lat)
    served = np.sort(lat[~rej])
    q = slo.latency_quantile

    def arrivals_quantile(p: float) -> float:
        # 'higher' quantile over arrivals, rejected sorted last as infinitely late
        idx = math.ceil(p * (n - 1))
        return float(served[idx]) if idx < len(served) else latency_cap_ms

    if len(served):
        served_q = float(served[math.ceil(q * (len(served) - 1))])
        reported = histogram_quantile_from_ms(served, q)
        mean_ms = float(served.mean())
    else:
        served_q = reported = mean_ms = latency_cap_ms
    row = [
        float(np.searchsorted(served, slo.latency_ms, side="right")) / n,
        float(np.count_nonzero(rej)) / n,
        min(1.0, run.busy_fraction),
        float(run.batch_sizes.mean()) if run.batch_sizes.size else 1.0,
        mean_ms,
        arrivals_quantile(q),
        arrivals_quantile(0.5),
        arrivals_quantile(0.99),
        served_q,
        reported,
    ]
    cdf = np.searchsorted(served, latency_grid_ms, side="right").astype(np.float64) / n
    return row, cdf


def des_columns(
    service: ServiceTime, params: BatchingParams, slo: SLO, latency_grid_ms: FloatArray, latency_cap_ms: float
) -> TruthColumns:
    """Measure every column on the uniform rate grid (see the module docstring for the design)."""
    validate_params(params)
    servers = service.servers(params)
    big_b = params.max_batch_size
    mu_rps = servers * big_b / service.s(big_b)
    rates = np.linspace(0.0, TOP_FRACTION * mu_rps, RATE_POINTS)
    unit = _unit_arrivals(MAX_REQUESTS)
    grid = np.asarray(latency_grid_ms, dtype=np.float64)
    queue_requests = float(params.max_enqueued_batches * big_b)  # what a full batch queue holds
    rows: list[list[float]] = []
    cdfs: list[FloatArray] = []
    for r in rates.tolist():
        if r <= 0.0:
            # a lone request: the open batch waits its timeout, then runs alone
            lone_ms = params.batch_timeout_us / 1000.0 + service.ms(1)
            rows.append([float(lone_ms <= slo.latency_ms), 0.0, 0.0, 1.0] + [lone_ms] * 6)
            cdfs.append((grid >= lone_ms).astype(np.float64))
            continue
        if r >= OVERLOAD * mu_rps:
            # saturated: the queue fills at r - mu; measure BASE_REQUESTS after it is full
            fill_s = 1.5 * queue_requests / (r - mu_rps)  # 1.5x the mean: Poisson arrivals lag it
            n = min(MAX_REQUESTS, BASE_REQUESTS + math.ceil(r * fill_s))
            row, cdf = measure(unit[:n] / r, params, service, slo, grid, latency_cap_ms, fill_s)
        else:
            n = BASE_REQUESTS
            row, cdf = measure(unit[:n] / r, params, service, slo, grid, latency_cap_ms, _warmup_s(n, r))
            if row[0] < 1.0 or row[1] > 0.0:  # the SLO tail starts here: measure it long
                n = int(min(MAX_REQUESTS, max(BASE_REQUESTS, math.ceil(r * SIM_SECONDS))))
                row, cdf = measure(unit[:n] / r, params, service, slo, grid, latency_cap_ms, _warmup_s(n, r))
        rows.append(row)
        cdfs.append(cdf)
    c = np.asarray(rows, dtype=np.float64).T
    return TruthColumns(
        rates=rates, within=c[0], rejected=c[1], busy=c[2], batch=c[3], mean_ms=c[4], lat_q=c[5], p50=c[6],
        p99=c[7], lat_q_served=c[8], lat_q_reported=c[9], cdf=np.asarray(cdfs), cdf_rates=rates,
    )  # fmt: skip


def _warmup_s(n: int, rate_rps: float) -> float:
    return max(WARMUP_MIN_S, WARMUP_FRACTION * n / rate_rps)
