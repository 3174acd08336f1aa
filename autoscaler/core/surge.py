"""Surge reserve: how far the load can climb within a lead time, learned from the target's own history.

Owned here, in the pure core, because it is what maps the SLO's attainment goal to provisioning
without a hand-set headroom. A forecast's normal-theory interval under-covers the minute-scale
surges real traffic has (a load that doubles inside one minute, faster than any cold start); the
only cover for them is standing capacity, and how much is a property of the traffic. So from the
per-step history of the offered load (the forecaster's buckets, missing steps NaN) we take, for
k = 1..K steps ahead, the smallest ratio r_k such that provisioning r_k × B[t] for the next k
steps leaves at most a `budget` share of the requests above it:

    sum_t sum_{j=1..k} max(0, L[t+j] - r_k B[t])  <=  budget * sum_t sum_{j=1..k} L[t+j]

where B[t] is the peak of the last `base_steps` steps (request-weighted: a surge at high load counts
more than one at night). The base is a window's peak because that is what the decision keeps: the
scale-down stabilization holds the largest recommendation of its window, so `decide()`'s "surge"
proposal, `observed load × r_k` for the lead time's k steps, stands for the window's peak load.
Measuring against one step instead would count the Poisson noise of a quiet minute as a surge. The
budget is a share
of the SLO's miss allowance (1 − attainment): requests above capacity miss the SLO, and so do some
queued behind them, so the share is below one (`SURGE_BUDGET_SHARE`, chosen on the tuning scenarios
only). The reserve never provisions above the highest load of the history (`Forecast.surge_cap_rps`).

The ratio is solved per season (a day by default) and the seasons' ratios are pooled by a quantile
(`SURGE_POOL_QUANTILE`), not over the whole history at once. A budget of 1e-4 of two weeks' requests
is a few minutes of load: one rare event of the fortnight — a logging outage ending, a launch — sets
the whole-history ratio (8×, the cap, on NASA and WorldCup) and the fleet then stands at that reserve
every day. Pooled across days, the reserve is what a typical day needs; a rare day's surge is left to
the reactive floor and panic mode. With fewer than `MIN_SEASONS` seasons of history the whole history
is used.
"""

from __future__ import annotations

import math

import numpy as np

from autoscaler.core.types import FloatArray
from autoscaler.spec.types import ServingAutoscalerSpec

# Share of the SLO's miss allowance (1 - attainment goal) that surges above the reserve may use, and
# the quantile that pools the seasons' ratios (None: one ratio over the whole history). Chosen jointly,
# the way every default is chosen here (benchmarks/default_settings.py): of shares 0.125 / 0.25 / 0.5 / 1
# and pools whole-history / median / 0.75, the cheapest pair that meets the goal on the most tuning
# scenarios (4 of 6: the two Azure scenarios are met by no causal policy); never on a held-out one.
# With hourly refits (refitIntervalSeconds, as the daemon runs) that is whole-history at 0.5 (mean 2.20x
# the oracle on the tuning folds), just ahead of the 0.75 pool at 0.5 (2.21x), which the same rule had
# picked when the forecaster refit once a day; both are far below whole-history at 0.125 (2.55x).
SURGE_BUDGET_SHARE = 0.5
SURGE_POOL_QUANTILE: float | None = None
# With no reserve learned yet (under MIN_WINDOWS + K steps of history: a new target's first hours) the
# forecaster hands decide() this prior instead of none, uncapped, and the reason says so. It is not
# chosen by the cost rule (no setting meets the goal on the two scenarios without history, so that rule
# would pick "none"): it is the median of the reserves the tuning traces with history learn at a
# two-minute lead, pooled at 0.75 with share 0.5 (WorldCup 1.07, ServeGen 1.37, NASA 60 s 2.24, NASA 1 s
# history 3.7), fixed before measuring. Measured on the two tuning scenarios without history (fluid,
# hpa mode): Azure LLM 87.6 % -> 90.9 % attainment (+17 % replica-hours), Azure Functions 97.3 % ->
# 97.8 % (+4 %); neither reaches the goal.
SURGE_PRIOR_RATIO = 1.8
# Fewer seasons than this: the whole history is one pool.
MIN_SEASONS = 3
# Below this many complete (t, t+k) windows the history says too little: no reserve is learned.
MIN_WINDOWS = 120
# Ratios are searched in [1, MAX_RATIO]; a history whose surges exceed this is capped (and says so).
MAX_RATIO = 8.0
_BISECT_STEPS = 40


def surge_budget(attainment_goal: float, share: float = SURGE_BUDGET_SHARE) -> float:
    """The request share surges may leave above the reserve, for an SLO attainment goal."""
    return share * max(0.0, 1.0 - attainment_goal)


def window_peak(y: FloatArray, steps: int) -> FloatArray:
    """B[t] = max(y[t - steps + 1 .. t]) over the finite values (NaN when none is)."""
    out = y.copy()
    for j in range(1, max(1, steps)):
        prev = np.concatenate((np.full(j, np.nan), y[: len(y) - j]))
        out = np.fmax(out, prev)
    return out


def surge_settings(spec: ServingAutoscalerSpec, share: float = SURGE_BUDGET_SHARE) -> tuple[float, float]:
    """(budget, base window s) of a target's surge reserve: a share of the SLO's miss allowance, measured
    against the peak of the scale-down stabilization window."""
    base_s = float(spec.behavior.scale_down.stabilization_window_s) or float(spec.forecaster.step_s)
    return surge_budget(spec.slo.attainment, share), base_s


def surge_ratios(
    values: FloatArray,
    max_steps: int,
    budget: float,
    *,
    base_steps: int = 1,
    season_steps: int = 0,
    pool_quantile: float | None = None,
) -> tuple[float, ...]:
    """r_1..r_K (non-decreasing) for the per-step load history `values` (oldest first, NaN = missing),
    against the peak of the last `base_steps` steps; with `pool_quantile`, solved per complete season
    of `season_steps` steps (newest last) and pooled by that quantile of the seasons' ratios.

    Empty when the history has fewer than `MIN_WINDOWS` usable windows or no load at all.
    """
    if pool_quantile is not None:
        if not 0.0 < pool_quantile <= 1.0:
            raise ValueError(f"surge pool_quantile: expected a quantile in (0, 1] (got {pool_quantile})")
        y_all = np.asarray(values, dtype=np.float64)
        n_seasons = len(y_all) // season_steps if season_steps > 0 else 0
        if n_seasons >= MIN_SEASONS:
            start = len(y_all) - n_seasons * season_steps
            per = [
                surge_ratios(y_all[start + i * season_steps : start + (i + 1) * season_steps], max_steps, budget,
                             base_steps=base_steps)
                for i in range(n_seasons)
            ]
            pooled: list[float] = []
            for k in range(max_steps):
                rs = [p[k] for p in per if len(p) > k]
                if len(rs) < MIN_SEASONS:
                    break
                pooled.append(max(float(np.quantile(rs, pool_quantile)), pooled[-1] if pooled else 1.0))
            return tuple(pooled)
    y = np.asarray(values, dtype=np.float64)
    if max_steps < 1 or y.ndim != 1 or len(y) < MIN_WINDOWS + max_steps or not budget > 0.0:
        return ()
    peak = window_peak(y, base_steps)
    out: list[float] = []
    prev = 1.0
    for k in range(1, max_steps + 1):
        base = peak[: len(y) - k]
        ahead = np.stack([y[j : len(y) - k + j] for j in range(1, k + 1)])  # (k, windows)
        ok = np.isfinite(base) & (base > 0.0) & np.all(np.isfinite(ahead), axis=0)
        if int(ok.sum()) < MIN_WINDOWS:
            return tuple(out)
        b, a = base[ok], ahead[:, ok]
        total = float(a.sum())
        if not total > 0.0:
            return tuple(out)
        allowed = budget * total

        def excess(r: float, b: FloatArray = b, a: FloatArray = a) -> float:
            return float(np.maximum(a - r * b, 0.0).sum())

        lo, hi = prev, MAX_RATIO
        if excess(lo) <= allowed:
            r = lo
        elif excess(hi) > allowed:
            r = hi
        else:
            for _ in range(_BISECT_STEPS):
                mid = 0.5 * (lo + hi)
                if excess(mid) <= allowed:
                    hi = mid
                else:
                    lo = mid
            r = hi
        prev = r if math.isfinite(r) else prev
        out.append(prev)
    return tuple(out)
