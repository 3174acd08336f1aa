"""`oracle`: the cheapest replica schedule that meets the SLO attainment goal, knowing the future.

The lower bound every other policy is measured against (`×oracle` in reports). It reads the
whole future offered load (`PolicyContext.future_rps`, requests/s per second) and plans, once,
in `start()`:

1. **Misses per replica count.** With n ready replicas in second t, the fluid model (the same
   `sim/fluid.py` tables the engine serves with: the DES-measured truth at the replicas' real speed,
   `PolicyContext.true_service_scale`) says a_t·(1 − F(a_t/n)) requests miss the SLO latency (late
   or rejected), F = the tables' fraction of arrivals within `slo.latency_ms`.
2. **Spend the miss budget where it saves most.** Attainment is a global budget: at most
   B = (1 − goal)·Σa misses over the whole replay (times `budget_fraction` < 1 as a safety
   margin for startup jitter). Time is cut into blocks of `block_s` seconds, one replica count
   per block; for a price λ per miss each block independently takes the n minimizing
   n·block_s + λ·misses(n) (the Lagrangian relaxation of "minimize replica-seconds subject to
   misses ≤ B"), and λ is bisected to the cheapest schedule within the budget. This is exactly
   the greedy "drop a replica where it costs fewest misses per replica-second saved", applied to
   all blocks at once.
3. **Cold starts.** A replica that disappears and comes back within a mean startup delay would
   cost more to restart than to keep (a new pod is paid for while Pending), so dips shorter than
   `spec.startup.mean_s` are filled, level by level. Each rise is requested `lead_s` early: the
   99.9 % quantile of the startup-delay distribution plus one decision period, so the pods are
   ready in time even with jitter. Step 2 is repeated with the budget rescaled until the filled
   schedule uses (almost) exactly the allowed misses.

Why it is a bound: under the simulator's model (fluid per-second steady state, even load
balancing, the spec's startup-delay distribution, batching fixed at `spec.batching.initial`),
any schedule meeting the goal must hold at least the ready replicas that step 2 finds for the
same miss total, and pays at least the startup time of every rise. The slack it contains —
block granularity, the early request at the delay's 99.9 % quantile instead of the exact delay,
the safety fraction of the budget — is what separates it from the exact optimum; every
realizable policy pays those too, so on the same model no policy meeting the SLO is cheaper
(`tests/test_sim_policies.py` asserts it on the shipped traces). When the spec lets batching be
tuned, the oracle runs from t = 0 with the parameters `core.batching.choose_batching` rates best
at the SLO capacity (our policy can reach them only through a rolling restart).
"""

from __future__ import annotations

import math
from typing import ClassVar

import numpy as np

from autoscaler.core.batching import choose_batching
from autoscaler.core.capacity import CapacityModel
from autoscaler.core.types import FloatArray
from autoscaler.sim.cluster import startup_quantile_s
from autoscaler.sim.fluid import RateTable, rate_table
from autoscaler.sim.view import ClusterView, PolicyContext, PolicyOutput
from autoscaler.spec.types import ServingAutoscalerSpec

CANDIDATES = 16  # replica counts tried below the negligible-miss count, per block
IntArray = np.ndarray


def _misses(table: RateTable, a: FloatArray, n: np.ndarray) -> FloatArray:
    """Requests missing the SLO per second when a[t] arrive on n[t] ready replicas."""
    nn = np.maximum(n, 1).astype(np.float64)
    r = a / nn
    rc = np.minimum(r, table.top_rps)
    within = np.interp(rc, table.rates, table.within)
    within = np.where(r > table.top_rps, within * table.top_rps / np.maximum(r, 1e-12), within)
    within = np.where(n <= 0, 0.0, within)
    out: FloatArray = a * (1.0 - within)
    return out


def fill_short_dips(need: np.ndarray, max_gap_s: int) -> np.ndarray:
    """Level by level, keep a replica through absences shorter than `max_gap_s` seconds."""
    out = need.copy()
    n = len(need)
    if n == 0:
        return out
    for k in range(int(need.min()) + 1, int(need.max()) + 1):
        z = np.concatenate(([1], (need >= k).astype(np.int8), [1]))
        d = np.diff(z)
        starts = np.flatnonzero(d == -1)
        ends = np.flatnonzero(d == 1)
        short = (starts > 0) & (ends < n) & (ends - starts < max_gap_s)
        if not short.any():
            continue
        cover = np.zeros(n + 1, dtype=np.int64)
        np.add.at(cover, starts[short], 1)
        np.add.at(cover, ends[short], -1)
        mask = np.cumsum(cover[:n]) > 0
        out[mask] = np.maximum(out[mask], k)
    return out


def rolling_future_max(x: np.ndarray, window: int) -> np.ndarray:
    """y[t] = max(x[t : t + window + 1])."""
    n = len(x)
    if n == 0 or window <= 0:
        return x.copy()
    pad = np.concatenate((x, np.full(window, x[-1])))
    # doubling trick: O(n log window)
    span = 1
    cur = pad.copy()
    while span * 2 <= window + 1:
        cur = np.maximum(cur[: len(cur) - span], cur[span:])
        span *= 2
    rem = window + 1 - span
    y = np.maximum(cur[:n], cur[rem : rem + n]) if rem > 0 else cur[:n]
    return y


class OraclePolicy:
    name: ClassVar[str] = "oracle"
    knob: ClassVar[str] = "budget_fraction"
    clairvoyant: ClassVar[bool] = True

    def __init__(
        self,
        spec: ServingAutoscalerSpec,
        *,
        budget_fraction: float = 0.9,
        block_s: int = 30,
        period_s: float = 15.0,
    ) -> None:
        if not (0.0 <= budget_fraction <= 1.0):
            raise ValueError(f"oracle.budget_fraction: expected a fraction in [0, 1] (got {budget_fraction})")
        if block_s < 1:
            raise ValueError(f"oracle.block_s: expected an integer >= 1 second (got {block_s})")
        self.spec = spec
        self.budget_fraction = budget_fraction
        self.block_s = int(block_s)
        self.period_s = period_s
        self.plan: np.ndarray = np.zeros(0, dtype=np.int64)  # desired replicas per second
        self.need: np.ndarray = np.zeros(0, dtype=np.int64)  # ready replicas needed per second
        self.start_s = 0.0
        self.params = spec.batching.initial

    # ---- planning ---------------------------------------------------------------------------
    def start(self, ctx: PolicyContext) -> None:
        if ctx.future_rps is None:
            raise ValueError("oracle is clairvoyant: the engine must pass future_rps")
        self.start_s = ctx.start_s
        a = np.nan_to_num(np.asarray(ctx.future_rps, dtype=np.float64))
        spec = self.spec
        # the replicas' real speed; ranking batching needs no exact one-server tail (the table has the truth)
        model = CapacityModel(spec.profile, service_scale=ctx.true_service_scale, exact_tail=False)
        self.params = spec.batching.initial
        if spec.batching.tune:
            rate = model.capacity_at_slo_rps(self.params, spec.slo)
            self.params = choose_batching(model, spec, rate, self.params).params
        table = rate_table(model, self.params, spec.slo)
        budget = (1.0 - spec.slo.attainment) * float(a.sum()) * self.budget_fraction
        lead_s = math.ceil(startup_quantile_s(spec.startup, 0.999) + self.period_s)
        gap_s = math.ceil(spec.startup.mean_s)
        target = budget
        need = self._allocate(table, a, target)
        for _ in range(6):
            filled = fill_short_dips(need, gap_s)
            used = float(_misses(table, a, filled).sum())
            if used <= 0 or abs(used - budget) <= 0.02 * budget or target > 50 * budget:
                break
            target *= budget / used if used < budget else 0.9 * budget / used
            cand = self._allocate(table, a, target)
            if float(_misses(table, a, fill_short_dips(cand, gap_s)).sum()) <= budget:
                need = cand
            else:
                break
        filled = fill_short_dips(need, gap_s)
        self.need = filled
        self.plan = rolling_future_max(filled, lead_s)

    def _allocate(self, table: RateTable, a: FloatArray, budget: float) -> np.ndarray:
        """Per-second ready replicas from the block-wise Lagrangian allocation of `budget` misses."""
        spec = self.spec
        n_s = len(a)
        lo, hi = spec.min_replicas, spec.max_replicas
        # per-second count whose misses are negligible against the budget (1 % of the goal's share)
        safe_ok = table.within >= 1.0 - 0.01 * (1.0 - spec.slo.attainment)
        bad = np.flatnonzero(~safe_ok)
        r_safe = float(table.rates[bad[0] - 1]) if len(bad) and bad[0] > 0 else float(table.rates[-1])
        r_safe = max(r_safe, 1e-9)
        n_hi_s = np.clip(np.ceil(a / r_safe - 1e-9), lo, hi).astype(np.int64)
        b = self.block_s
        n_blocks = math.ceil(n_s / b)
        starts = np.arange(n_blocks) * b
        n_hi_b = np.maximum.reduceat(n_hi_s, starts)
        lengths = np.diff(np.append(starts, n_s)).astype(np.float64)
        block_of = np.repeat(np.arange(n_blocks), b)[:n_s]
        miss = np.zeros((n_blocks, CANDIDATES))
        counts = np.zeros((n_blocks, CANDIDATES), dtype=np.int64)
        for k in range(CANDIDATES):
            nb = np.maximum(n_hi_b - k, lo)
            counts[:, k] = nb
            miss[:, k] = np.add.reduceat(_misses(table, a, nb[block_of]), starts)
        cost = counts * lengths[:, None]

        def choose(lam: float) -> tuple[np.ndarray, float]:
            idx = np.argmin(cost + lam * miss, axis=1)
            rows = np.arange(n_blocks)
            return counts[rows, idx], float(miss[rows, idx].sum())

        if choose(0.0)[1] <= budget:
            chosen = choose(0.0)[0]
        else:
            lam_lo, lam_hi = 0.0, 1.0
            while choose(lam_hi)[1] > budget and lam_hi < 1e15:
                lam_hi *= 4.0
            for _ in range(50):
                mid = math.sqrt(max(lam_lo, 1e-12) * lam_hi) if lam_lo > 0 else lam_hi / 4.0
                if choose(mid)[1] <= budget:
                    lam_hi = mid
                else:
                    lam_lo = mid
                if lam_hi - lam_lo <= 1e-6 * lam_hi:
                    break
            chosen = choose(lam_hi)[0]
        out: np.ndarray = chosen[block_of]
        return out

    # ---- acting -----------------------------------------------------------------------------
    def decide(self, view: ClusterView) -> PolicyOutput:
        i = round(view.now_s - self.start_s)
        if len(self.plan) == 0:
            return PolicyOutput(desired_replicas=self.spec.min_replicas, reason="no load")
        i = min(max(i, 0), len(self.plan) - 1)
        return PolicyOutput(desired_replicas=int(self.plan[i]), batching=self.params, reason="oracle plan")
