"""The steady state of one TF Serving replica at one arrival rate: the batch-size fixed point.

Owns the analytic queueing model behind `CapacityModel` (which memoizes its answers) and the
latency distribution of one steady state (`Steady.cdf_many`). It has to be fast, so it is
analytic; `core/batchqueue.py` is the exact discrete-event reference it is validated against
(tests/test_capacity.py, benchmarks/capacity_model.py report the errors). The scheduler modelled
is TF Serving's `SharedBatchScheduler` (tensorflow/core/kernels/batching_util/shared_batch_scheduler.h).

Model (λ arrival rate, B max_batch_size, T batch timeout, c batch threads, S(k) service time
of a batch of k from the `ServiceProfile`). TF Serving's shared batch scheduler dispatches the
open batch when it is full, or once its timeout has passed *and* a thread is free:

* A batch opens with its first request; R is the time until a thread is free. It is dispatched
  after A = max(T, R), holding K = 1 + Poisson(λA) requests (capped at B). So batches are
  timeout-sized at light load and grow with load when threads are busy.
* R comes from the threads' state at the opening instant: the thread that took the previous
  batch is busy for S(K_prev) minus the Exp(λ) wait for this batch's first arrival; each other
  thread is busy with probability u (utilization) for an equilibrium residual of S(K). For
  c ≥ 2 the threads stay staggered in reality (they are not independent), so the busy part of R
  is shrunk toward its mean by `_STAGGER` = 0.7, a factor fitted against the DES.
* The batch-size distribution π is the fixed point of π → R → A → K (damped iteration with
  Anderson mixing: 5-20 steps where the plain damped iteration took 30-140).
* A request's wait is A for the first of its batch and a uniform fraction of A for the others
  (Poisson arrivals are uniform given their count); latency = wait + S(K).
* Full batches also queue behind each other as closed batches: an extra wait X with the
  Erlang-C probability and an exponential tail of Allen–Cunneen mean for a G/D/c queue of
  batches (arrival SCV 1/B). Arrivals beyond max_enqueued_batches queued batches are rejected;
  above the maximum throughput c·B/S(B) the replica is overloaded: the excess is rejected and
  latency quantiles are infinite.
* One server (c = 1: one GPU, the default): describing one batch at a time loses the requests
  that overflow a full open batch while the server is busy, so near capacity the fixed point
  counted about half the DES's SLO misses (T4, p99 ≤ 100 ms: 1.0 % vs 1.9 % at 359 rps). There
  the latency distribution, mean batch, utilization and rejections come from the request queue
  solved as an embedded Markov chain (`core/bulkqueue.py`, within ~10 % of the DES's misses from
  0.8x to 1.05x capacity, tests/test_capacity_tail.py); the fixed point still gives the warm
  starts and, with `exact_tail=False`, a ~10x cheaper model for ranking batching parameters.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from autoscaler.core.bulkqueue import BulkQueue
from autoscaler.core.types import FloatArray
from autoscaler.spec.types import BatchingParams

_STAGGER = 0.7  # shrink of the thread-wait spread for c >= 2 (fitted against the DES)
_NODES = 32  # discretisation of the thread-wait distribution
_ANDERSON = 3  # earlier fixed-point steps the Anderson mixing of `solve` combines


def _erlang_c(servers: int, offered: float) -> float:
    """Erlang-C probability that an arrival waits in M/M/c (offered load a = λ/μ < c).

    Uses the numerically stable Erlang-B recursion B_k = a·B_{k-1} / (k + a·B_{k-1}), then
    C = c·B / (c - a·(1 - B)); fine for thousands of servers.
    """
    if offered <= 0.0:
        return 0.0
    if offered >= servers:
        return 1.0
    blocking = 1.0
    for k in range(1, servers + 1):
        blocking = offered * blocking / (k + offered * blocking)
    return servers * blocking / (servers - offered * (1.0 - blocking))


def _uniform_plus_exp_cdf(y: FloatArray, lo: FloatArray, width: FloatArray, mean: float) -> FloatArray:
    """P(U + X ≤ y) for U ~ Uniform[lo, lo + width], X ~ Exp(mean) (elementwise)."""
    z = y - lo

    def ramp(t: FloatArray) -> FloatArray:
        t = np.maximum(t, 0.0)
        return t - mean * -np.expm1(-t / mean)  # ∫_0^t (1 - e^{-x/m}) dx

    safe = np.maximum(width, 1e-12)
    out = (ramp(z) - ramp(z - width)) / safe
    return np.where(z <= 0.0, 0.0, np.clip(out, 0.0, 1.0))


def _anderson_step(
    pi: FloatArray, new: FloatArray, f: FloatArray, hist: list[tuple[FloatArray, FloatArray]]
) -> FloatArray:
    """Next iterate of the batch-size fixed point π = G(π): Anderson mixing (Walker & Ni) over the
    last `_ANDERSON` steps with damping 0.5, or the damped step 0.5·(π + G(π)) without history.

    `new` = G(pi), `f` = new − pi (a fresh array, kept); `hist` holds (f, G) of earlier steps and
    is extended here. The damped iteration alone needs 30-140 steps to a residual of 1e-6; mixing,
    5-20. Kept a distribution: negative entries are cut and the rest renormalized.
    """
    hist.append((f, new.copy()))
    if len(hist) > _ANDERSON + 1:
        del hist[0]
    if len(hist) < 2:
        return 0.5 * (pi + new)
    fs = np.array([h[0] for h in hist])
    gs = np.array([h[1] for h in hist])
    d_f, d_g = fs[1:] - fs[:-1], gs[1:] - gs[:-1]
    gamma = _solve_small((d_f @ d_f.T).tolist(), (d_f @ f).tolist())
    if gamma is None:
        hist.clear()
        return 0.5 * (pi + new)
    weights = np.array(gamma)
    out: FloatArray = new - weights @ d_g - 0.5 * (f - weights @ d_f)
    low = float(out.min())
    if not math.isfinite(low):
        hist.clear()
        return 0.5 * (pi + new)
    if low < 0.0:
        out = np.maximum(out, 0.0)
        out = out / out.sum()
    return out


def _solve_small(a: list[list[float]], b: list[float]) -> list[float] | None:
    """x with (a + ε·I) x = b for a tiny symmetric PSD `a` (Gauss-Jordan, partial pivoting, ε = 1e-12 ×
    the largest diagonal entry); None when `a` is zero, not finite or nearly singular (pivot ≤ 1e-10 ×
    that entry)."""
    n = len(b)
    scale = max(a[i][i] for i in range(n))
    if not scale > 1e-280:  # also NaN
        return None
    m = [[a[i][j] + (1e-12 * scale if i == j else 0.0) for j in range(n)] + [b[i]] for i in range(n)]
    for col in range(n):
        piv = max(range(col, n), key=lambda r: abs(m[r][col]))
        if not abs(m[piv][col]) > 1e-10 * scale:  # (nearly) dependent steps: no mixing this time
            return None
        m[col], m[piv] = m[piv], m[col]
        row = m[col]
        inv = 1.0 / row[col]
        for r in range(n):
            if r != col and m[r][col] != 0.0:
                factor = m[r][col] * inv
                m[r] = [x - factor * y for x, y in zip(m[r], row, strict=True)]
    return [m[i][n] / m[i][i] for i in range(n)]


@dataclass(frozen=True)
class Steady:
    """Steady state of one replica at one rate. Times in seconds; arrays over wait nodes × sizes."""

    rate_rps: float
    batch_size: float  # mean batch size
    utilization: float  # thread busy fraction 0..1
    rejected: float  # fraction of arrivals rejected
    overloaded: bool
    overload_latency_s: float  # latency of served requests when overloaded
    wait_p: FloatArray  # probability of each thread-wait node
    wait_s: FloatArray  # accumulation time A = max(T, R) at each node
    full_wait_s: FloatArray  # dispatch delay of a full batch's first request, max(fill, R)
    fill_s: FloatArray  # time over which a full batch's requests arrived
    size_p: FloatArray  # P(K = k | node), shape (nodes, B + 1)
    service_s: FloatArray  # S(k), k = 0..B
    queue_p: float  # probability a full batch queues behind others
    queue_mean_s: float  # mean of that exponential extra wait
    pi: FloatArray  # batch-size distribution (for warm starts)
    # one server: the exact queue of requests (`core/bulkqueue.py`) answers the latency distribution
    bulk: BulkQueue | None = field(default=None, repr=False, compare=False)
    # (wait node, size) terms with non-negligible weight, flattened so the CDF is two matvecs
    _part_wait_s: FloatArray = field(init=False, repr=False, compare=False)
    _part_service_s: FloatArray = field(init=False, repr=False, compare=False)
    _part_first_w: FloatArray = field(init=False, repr=False, compare=False)
    _part_other_w: FloatArray = field(init=False, repr=False, compare=False)
    _full_idx: FloatArray = field(init=False, repr=False, compare=False)
    _part_wait_floor_s: FloatArray = field(init=False, repr=False, compare=False)
    _full_w: FloatArray = field(init=False, repr=False, compare=False)
    _full_a_s: FloatArray = field(init=False, repr=False, compare=False)
    _full_lo_s: FloatArray = field(init=False, repr=False, compare=False)
    _full_fill_s: FloatArray = field(init=False, repr=False, compare=False)
    _full_fill_floor_s: FloatArray = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        big_b = len(self.service_s) - 1
        weight = self.wait_p[:, None] * self.size_p[:, 1:big_b]
        nodes, sizes = np.nonzero(weight > 1e-9)  # probabilities; dropped mass < 1e-6
        w = weight[nodes, sizes]
        object.__setattr__(self, "_part_wait_s", self.wait_s[nodes])
        object.__setattr__(self, "_part_service_s", self.service_s[1:big_b][sizes])
        object.__setattr__(self, "_part_first_w", w)
        object.__setattr__(self, "_part_other_w", w * sizes.astype(np.float64))  # k - 1 = index
        full_w = self.wait_p * self.size_p[:, big_b]
        idx = np.nonzero(full_w > 1e-9)[0]
        object.__setattr__(self, "_full_idx", idx)
        # y-independent pieces of cdf_many, computed once
        object.__setattr__(self, "_part_wait_floor_s", np.maximum(self._part_wait_s, 1e-12)[None, :])
        a_b, f_b = self.full_wait_s[None, idx], self.fill_s[None, idx]
        object.__setattr__(self, "_full_w", self.wait_p[idx] * self.size_p[idx, big_b])
        object.__setattr__(self, "_full_a_s", a_b)
        object.__setattr__(self, "_full_lo_s", a_b - f_b)
        object.__setattr__(self, "_full_fill_s", f_b)
        object.__setattr__(self, "_full_fill_floor_s", np.maximum(f_b, 1e-12))

    def cdf(self, latency_s: float) -> float:
        """P(latency ≤ x) among *served* requests."""
        return float(self.cdf_many(np.array([latency_s], dtype=np.float64))[0])

    def cdf_many(self, latency_s: FloatArray) -> FloatArray:
        """P(latency ≤ x) among *served* requests, for every x in a 1-D array (seconds)."""
        x = np.asarray(latency_s, dtype=np.float64).reshape(-1)
        if self.overloaded:
            return (x >= self.overload_latency_s).astype(np.float64)
        if self.bulk is not None:
            return self.bulk.cdf_many(x)
        big_b = len(self.service_s) - 1
        # batches that did not fill: first request waits A, the others A·U
        y = x[:, None] - self._part_service_s[None, :]
        a = self._part_wait_s[None, :]
        num = (a <= y).astype(np.float64) @ self._part_first_w
        num = num + np.clip(y / self._part_wait_floor_s, 0.0, 1.0) @ self._part_other_w
        # full batches: waits from max(fill, R) down to max(fill, R) - fill, plus the queue X
        if self._full_idx.size:
            w_b = self._full_w
            y_b = (x - self.service_s[big_b])[:, None]
            a_b, f_b = self._full_a_s, self._full_fill_s
            pq, mq = self.queue_p, self.queue_mean_s
            lo = self._full_lo_s
            first_b = np.where(a_b <= y_b, 1.0 - pq * np.exp(-np.maximum(y_b - a_b, 0.0) / mq), 0.0)
            other_b = (1.0 - pq) * np.clip((y_b - lo) / self._full_fill_floor_s, 0.0, 1.0)
            other_b = other_b + pq * _uniform_plus_exp_cdf(y_b, lo, f_b, mq)
            num = num + (first_b + (big_b - 1) * other_b) @ w_b
        out: FloatArray = np.minimum(1.0, num / self.batch_size)
        return out

    def mean_latency_s(self) -> float:
        if self.overloaded:
            return self.overload_latency_s
        if self.bulk is not None:
            return self.bulk.mean_latency_s()
        big_b = len(self.service_s) - 1
        k = np.arange(big_b + 1, dtype=np.float64)
        weight = self.wait_p[:, None] * self.size_p
        a = self.wait_s[:, None]
        wait_part = a * (1.0 + (k - 1.0) * 0.5)
        full_wait = self.full_wait_s + self.queue_p * self.queue_mean_s
        full = full_wait + (big_b - 1.0) * (full_wait - 0.5 * self.fill_s)
        wait_part[:, big_b] = full
        total = (weight * (wait_part + k * self.service_s[None, :])).sum()
        return float(total / self.batch_size)


SolverConstants = tuple[FloatArray, FloatArray, FloatArray, FloatArray, FloatArray, FloatArray]


def solver_constants(svc: FloatArray) -> SolverConstants:
    """Rate-independent arrays of `solve` for the service table `svc` = S(k), k = 0 .. B: the table
    itself, the thread-wait nodes, the residual service at each node (nodes, B+1), each node's busy
    midpoint, lgamma(k+1) for k = 0 .. B-2, and the columns (k, S(k)) for k = 0 .. B.
    """
    big_b = len(svc) - 1
    grid = np.linspace(0.0, svc[big_b], _NODES + 1)
    resid = np.clip(svc[None, :] - grid[:, None], 0.0, None)
    r0 = np.concatenate(([0.0], 0.5 * (grid[:-1] + grid[1:])))
    lgam = np.array([math.lgamma(j + 1.0) for j in range(big_b)])
    ks = np.ascontiguousarray(np.stack((np.arange(big_b + 1, dtype=np.float64), svc), axis=1))
    return svc, grid, resid, r0, lgam[None, : big_b - 1], ks


def overload_latency_s(full_batch_s: float, max_enqueued_batches: int, servers: int) -> float:
    """Latency of a served request on an overloaded replica: behind a full batch queue.

    Above the maximum throughput the queue stays full, so an admitted request waits for the
    batches ahead of it, on average max_enqueued_batches − 0.5 full batches shared by the
    `servers` batches that run in parallel, and then for its own batch: S(B) + (E − 0.5)·S(B)/c.
    The one formula for the model's overloaded steady state, `fraction_within` beyond its table
    and the simulator's analytic truth (`sim/fluid.py`).
    """
    return full_batch_s + (max_enqueued_batches - 0.5) * full_batch_s / servers


def solve(
    lam: float,
    params: BatchingParams,
    servers: int,
    constants: SolverConstants,
    warm: FloatArray | None,
    exact_tail: bool = True,
) -> Steady:
    """The steady state of one replica at `lam` requests/s: the batch-size fixed point (see the module
    docstring), and on one server with `exact_tail` the exact request queue (`core/bulkqueue.py`).

    `servers`: batches that run in parallel (`ServiceTime.servers`); `constants`: `solver_constants`
    of the service table for `params.max_batch_size`; `warm`: a batch-size distribution to start from.
    """
    big_b, c = params.max_batch_size, servers
    timeout_s = params.batch_timeout_us * 1e-6
    svc, grid, resid, r0, lgam_b, ks = constants
    mu_max = c * big_b / svc[big_b]
    if lam >= mu_max:
        pi = np.zeros(big_b + 1)
        pi[big_b] = 1.0
        one = np.ones(1)
        return Steady(
            lam, float(big_b), 1.0, 1.0 - mu_max / lam, True,
            overload_latency_s(svc[big_b], params.max_enqueued_batches, c),
            one, one * timeout_s, one * 0.0, one * 0.0, pi[None, :], svc, 0.0, 1.0, pi,
        )  # fmt: skip
    rate_rps, lam = lam, max(lam, 1e-9)  # an idle replica is the limit of a tiny rate
    nodes = len(grid)
    lam_resid = -np.expm1(-lam * resid)
    pi = warm.copy() if warm is not None and len(warm) == big_b + 1 else np.eye(big_b + 1)[1]
    extra_b = ks[None, : big_b - 1, 0]  # arrivals after the first: 0 .. B-2 (B-1 and up: full)

    def batch_sizes(a: FloatArray) -> tuple[FloatArray, FloatArray]:
        """P(K = k | node) for k = 1 .. B-1 and P(K = B | node), accumulating `a` seconds at each node."""
        m = lam * a
        logp = np.log(np.maximum(m, 1e-300))[:, None] * extra_b
        logp -= m[:, None]
        logp -= lgam_b
        pmf = np.exp(logp)
        idle = m <= 0.0
        if idle.any():  # nothing more arrives: the batch holds its first request only
            pmf[idle] = 0.0
            pmf[idle, :1] = 1.0
        return pmf, np.clip(1.0 - pmf.sum(axis=1), 0.0, None)

    # with one server the wait nodes do not move, so A and P(K | node) are loop invariants
    staggered = c >= 2
    both = np.concatenate((lam_resid, resid)) if staggered else lam_resid
    r_tail = r0[1:]
    a = np.maximum(r0, timeout_s)
    pmf, full = batch_sizes(a)
    ext = np.empty(nodes + 1)  # [1, surv...]: wait_p is its negative difference
    ext[0] = 1.0
    new = np.zeros(big_b + 1)
    hist: list[tuple[FloatArray, FloatArray]] = []
    last_err = math.inf
    u = 0.0
    for _ in range(400):
        mean_k, mean_s = (pi @ ks).tolist()
        u = min(1.0 - 1e-12, lam * mean_s / (c * mean_k))
        surv = both @ pi
        if staggered:
            surv = surv[:nodes] * (u * surv[nodes:] / mean_s) ** (c - 1)
        ext[1:] = surv
        wait_p = ext[:-1] - ext[1:]
        wait_p[-1] += surv[-1]
        if staggered:
            wait_tail = wait_p[1:]
            busy = float(wait_tail.sum())
            if busy > 0.0:
                mid = float(wait_tail @ r0[1:]) / busy
                r_tail = np.maximum(mid + _STAGGER * (r0[1:] - mid), 0.0)
            else:
                r_tail = r0[1:]
            a[1:] = np.maximum(r_tail, timeout_s)
            pmf, full = batch_sizes(a)
        new[1:big_b] = wait_p @ pmf
        new[big_b] = wait_p @ full
        f = new - pi
        err = float(np.abs(f).max())
        if err < 1e-6:
            pi = new
            break
        if err > last_err:  # no progress: forget the history, take a plain damped step
            hist.clear()
        last_err = err
        pi = _anderson_step(pi, new, f, hist)
    r = np.concatenate((r0[:1], r_tail))
    size_p = np.zeros((nodes, big_b + 1))
    size_p[:, 1:big_b] = pmf
    size_p[:, big_b] = full
    k = ks[:, 0]
    mean_k = float(pi @ k)
    u = min(1.0, lam * float(pi @ svc) / (c * mean_k))
    fill = np.minimum(a, (big_b - 1) / lam) if big_b > 1 else np.zeros_like(a)
    full_wait = np.maximum(fill, r)
    rho_b = lam * svc[big_b] / (c * big_b)
    queue_p = _erlang_c(c, c * rho_b)
    queue_mean = svc[big_b] / (c * (1.0 - rho_b)) * (1.0 / big_b) / 2.0
    # no request waits longer than the queue bound allows: the rest are rejected instead
    slots = params.max_enqueued_batches - 1
    queue_mean = min(queue_mean, 0.5 * max(slots, 1) * svc[big_b] / c)
    # rejections: the queue of full batches (geometric, ratio sigma per batch) truncated at
    # max_enqueued_batches - 1 waiting behind the open one
    sigma = math.exp(-svc[big_b] / (c * queue_mean))
    p_full = float(pi[big_b])
    block = 1.0 / (slots + 1) if sigma >= 1.0 - 1e-12 else sigma**slots * (1.0 - sigma) / (1.0 - sigma ** (slots + 1))
    rejected = min(1.0, p_full * queue_p * block)
    bulk = None
    if c == 1 and exact_tail:  # one server: the request queue solved exactly (`core/bulkqueue.py`)
        bulk = BulkQueue(lam, svc, timeout_s, params.max_enqueued_batches)
        mean_k, u, rejected = bulk.batch_size, bulk.utilization, bulk.rejected
    return Steady(
        rate_rps, mean_k, u, rejected, False, math.inf, wait_p, a, full_wait, fill, size_p, svc,
        queue_p, queue_mean, pi, bulk,
    )  # fmt: skip
