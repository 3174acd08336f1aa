"""`phpa`: jthomperoo/predictive-horizontal-pod-autoscaler with one Holt-Winters model.

What the PHPA controller does every sync period (`internal/controllers/
predictivehorizontalpodautoscaler_controller.go`, `internal/prediction/holtwinters/holtwinters.go`):

1. Runs the HPA replica calculation on its metrics (here the Pods AverageValue rps metric of
   `hpa-rps`, knob `target_rps_per_pod`, with the HPA tolerance): the *calculated* replicas. No HPA
   normalization: no scale-up limit, no behaviors.
2. Appends the calculated replicas to the model's replica history; every `perSyncPeriod` syncs it
   asks the model for a prediction. With fewer than `2 * seasonalPeriods` or fewer than
   `10 + 2 * (seasonalPeriods // 2)` points the model answers 0 (statsmodels' minimum for its
   initialization), so before two full seasons PHPA runs on the calculated replicas alone.
3. Prunes the history to `storedSeasons` full seasons. Upstream sorts it newest first when pruning
   and appends new points at the end, so once pruning starts the series handed to Holt-Winters is
   newest-first followed by the newest point. This copy keeps that behaviour by default
   (`chronological_history=False`); set it to True to feed the series oldest-first instead.
4. Takes the decision (`maximum`, the default) over [calculated, predictions], clamps to
   [min, max], then applies its downscale stabilization: the max of the decisions of the last
   `downscaleStabilization` seconds (default 300; a decision exactly that old still counts).

Holt-Winters: PHPA >= v0.11 runs statsmodels' `ExponentialSmoothing(trend, seasonal,
seasonal_periods).fit(smoothing_level=alpha, smoothing_trend=beta, smoothing_seasonal=gamma,
optimized=False)` and returns ceil of the one-step forecast. Its parameters are fixed, so it is a
plain recursion; this module implements it in numpy/stdlib (additive trend and season, the
classic initialization of jthomperoo/holtwinters that PHPA used before v0.11: initial trend from
the first two seasons, seasonal indices from season averages), which keeps statsmodels under
`forecast/`. statsmodels' "estimated" initial states can differ slightly in the first seasons.
`holt_winters_additive` is the plain recursion (the reference); since the history order changes
every sync (newest first), the recursion cannot be continued from one sync to the next, so the
policy evaluates the same linear map as a dot product (`HoltWintersOneStep`: one vectorized
product instead of a Python step per sample of a day-long season). It matches the recursion up to
floating-point rounding, so the ceil ignores noise within 1e-9 (relative) above an integer
(`ceil_forecast`; statsmodels upstream has rounding noise of its own).

PHPA keeps its history in a ConfigMap that starts empty; `warm_start=True` instead seeds it with
the HPA replicas the pre-start load history would have produced (not what upstream does).
"""

from __future__ import annotations

import itertools
import math
from typing import ClassVar

import numpy as np

from autoscaler.core.types import FloatArray
from autoscaler.sim.policies.hpa import HPA_SYNC_PERIOD_S, HpaRpsPolicy
from autoscaler.sim.view import ClusterView, PolicyContext, PolicyOutput
from autoscaler.spec.types import ServingAutoscalerSpec


def holt_winters_additive(
    series: FloatArray,
    season_length: int,
    alpha: float,
    beta: float,
    gamma: float,
    horizon: int = 1,
    *,
    smoothed: bool = True,
) -> FloatArray:
    """Triple exponential smoothing, additive (jthomperoo/holtwinters `PredictAdditive`).

    Returns the smoothed series followed by `horizon` predictions (only the predictions with
    `smoothed=False`, which skips storing the smoothed values). The reference for
    `HoltWintersOneStep`, which the policy uses.
    """
    y = np.asarray(series, dtype=np.float64)
    n = len(y)
    L = season_length
    if L < 2 or n < L:
        raise ValueError(f"holt-winters needs season_length >= 2 and one full season (got {L}, {n})")
    trend = float(y[1] - y[0]) if n < 2 * L else float(np.sum((y[L : 2 * L] - y[:L]) / L) / L)
    n_seasons = n // L
    full = y[: n_seasons * L].reshape(n_seasons, L)
    seasonals: list[float] = ((full - full.mean(axis=1, keepdims=True)).sum(axis=0) / n_seasons).tolist()
    values: list[float] = y.tolist()
    smooth = values[0]
    out = [smooth] if smoothed else []
    a1, b1, g1 = 1.0 - alpha, 1.0 - beta, 1.0 - gamma
    # Season index k of point i is i % L; the loops below walk (value, k) pairs without index
    # arithmetic (the same floating-point operations in the same order as the plain recursion).
    pairs = zip(itertools.islice(values, 1, None), itertools.islice(itertools.cycle(range(L)), 1, None), strict=False)
    if smoothed:
        for val, k in pairs:
            last_smooth = smooth
            sk = seasonals[k]
            smooth = alpha * (val - sk) + a1 * (smooth + trend)
            trend = beta * (smooth - last_smooth) + b1 * trend
            sk = gamma * (val - smooth) + g1 * sk
            seasonals[k] = sk
            out.append(smooth + trend + sk)
    else:
        for val, k in pairs:
            last_smooth = smooth
            sk = seasonals[k]
            smooth = alpha * (val - sk) + a1 * (smooth + trend)
            trend = beta * (smooth - last_smooth) + b1 * trend
            seasonals[k] = gamma * (val - smooth) + g1 * sk
    for m in range(1, horizon + 1):
        out.append(smooth + m * trend + seasonals[(n - 1 + m) % L])
    return np.asarray(out, dtype=np.float64)


class HoltWintersOneStep:
    """The one-step forecast of `holt_winters_additive` as a dot product: O(n) numpy, no loop.

    With fixed alpha, beta, gamma the recursion is linear and time-invariant in the state
    x_i = (level_i, trend_i, s_i, s_{i-1}, ..., s_{i-L+1}), where s_t is the seasonal written at
    point t (s_t = initial seasonal t mod L for t <= 0): x_i = M x_{i-1} + B y_i for i >= 1 and the
    forecast after point n-1 is C x_{n-1} (level + trend + s_{n-L}). So
        forecast = sum_{i=1}^{n-1} g[n-1-i] y_i + (C M^{n-1}) x_0,  g[m] = C M^m B,
    and the rows r_m = C M^m follow r_m = r_{m-1} M, whose seasonal part is a window sliding over
    one scalar sequence q (r_m's seasonal entries are q[m : m+L]). The level/trend parts, q and g
    are computed once per parameter set (a scalar loop, extended to the longest series seen) and
    x_0 comes from the same initialization as `holt_winters_additive`. The result equals the
    recursion up to floating-point rounding (~1e-13 relative), not bit for bit.
    """

    def __init__(self, season_length: int, alpha: float, beta: float, gamma: float) -> None:
        if season_length < 2:
            raise ValueError(f"holt-winters needs season_length >= 2 (got {season_length})")
        self.season_length, self.alpha, self.beta, self.gamma = season_length, alpha, beta, gamma
        self._q = [0.0] * (season_length - 1) + [1.0]  # r_0 = C: seasonal part picks s_{n-L}
        self._level = [1.0]  # r_m's level coefficient
        self._trend = [1.0]  # r_m's trend coefficient
        self._g = [alpha + alpha * beta + gamma * (1.0 - alpha) * self._q[0]]  # r_m . B
        self._arrays = self._as_arrays()

    def _as_arrays(self) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray]:
        # q and g reversed: the forecast reads them backwards, and forward slices dot faster
        return (np.array(self._q[::-1]), np.array(self._level), np.array(self._trend), np.array(self._g[::-1]))

    def _extend(self, m_max: int) -> None:
        al, ga = self.alpha, self.gamma
        a1, ab, g1 = 1.0 - al, al * self.beta, 1.0 - ga
        q, lv, tr, g = self._q, self._level, self._trend, self._g
        r_l, r_b = lv[-1], tr[-1]
        for m in range(len(lv), m_max + 1):  # r_m = r_{m-1} M (M's transpose, written out)
            q_first = q[m - 1]
            r_l, r_b, q_new = (
                a1 * r_l - ab * r_b - ga * a1 * q_first,
                a1 * r_l + (1.0 - ab) * r_b - ga * a1 * q_first,
                -al * r_l - ab * r_b + (al * ga + g1) * q_first,
            )
            q.append(q_new)
            lv.append(r_l)
            tr.append(r_b)
            g.append(al * r_l + ab * r_b + ga * a1 * q[m])
        self._arrays = self._as_arrays()

    def forecast(self, series: FloatArray) -> float:
        y = np.asarray(series, dtype=np.float64)
        n = len(y)
        L = self.season_length
        if n < L:
            raise ValueError(f"holt-winters needs one full season (got {L}, {n})")
        if len(self._level) < n:  # grow geometrically: the history grows by one point per sync
            self._extend(max(n - 1, 2 * len(self._level)))
        q_rev, r_level, r_trend, g_rev = self._arrays
        # the initialization of `holt_winters_additive` (same values up to rounding): trend from the
        # sums of the first two seasons, seasonals = (column sums - their mean) / n_seasons
        n_seasons = n // L
        column_sums = y[:L].copy()
        season_sums = [float(column_sums.sum())]
        for s in range(1, n_seasons):
            season = y[s * L : (s + 1) * L]
            column_sums += season
            season_sums.append(float(season.sum()))
        trend = float(y[1] - y[0]) if n_seasons < 2 else (season_sums[1] - season_sums[0]) / L / L
        column_sums -= sum(season_sums) / L
        # x_0's seasonal part is (s_0, s_{-1}, ..., s_{-L+1}) = seasonals[0], seasonals[L-1], ..., [1];
        # g[n-2], ..., g[0] weigh y_1, ..., y_{n-1}; q[n-1] and q[n+L-2], ..., q[n] weigh the seasonals
        # (einsum, not `@`: OpenBLAS runs dot products this long on threads, which costs
        # milliseconds per call when the cores are busy)
        kq, kg = len(q_rev), len(g_rev)
        seasonal = float(column_sums[0]) * float(q_rev[kq - n])
        seasonal += float(np.einsum("i,i->", column_sums[1:], q_rev[kq - n - L + 1 : kq - n]))
        return (
            float(np.einsum("i,i->", y[1:], g_rev[kg - n + 1 :]))
            + float(r_level[n - 1]) * float(y[0])
            + float(r_trend[n - 1]) * trend
            + seasonal / n_seasons
        )


def ceil_forecast(x: float) -> int:
    """ceil, but a forecast within 1e-9 (relative, at least absolute) above an integer counts as it.

    A numerical-noise guard: the dot-product forecast differs from the recursion in the last bits,
    so a mathematically integral forecast (a constant history forecasts exactly that constant)
    must not round up to the next replica.
    """
    return math.ceil(x - 1e-9 * max(1.0, abs(x)))


class PredictiveHpaPolicy:
    """PHPA: the HPA calculation, a Holt-Winters prediction over its replica history, the max of both."""

    name: ClassVar[str] = "phpa"
    knob: ClassVar[str] = "target_rps_per_pod"
    clairvoyant: ClassVar[bool] = False

    def __init__(
        self,
        spec: ServingAutoscalerSpec,
        *,
        target_rps_per_pod: float = 100.0,
        alpha: float = 0.9,
        beta: float = 0.9,
        gamma: float = 0.9,
        seasonal_periods: int | None = None,
        stored_seasons: int = 2,
        per_sync_period: int = 1,
        downscale_stabilization_s: float = 300.0,
        chronological_history: bool = False,
        warm_start: bool = False,
        tolerance: float = 0.1,
        period_s: float = HPA_SYNC_PERIOD_S,
    ) -> None:
        for label, v in (("alpha", alpha), ("beta", beta), ("gamma", gamma)):
            if not 0.0 <= v <= 1.0:
                raise ValueError(f"phpa.{label}: expected 0..1 (got {v})")
        if seasonal_periods is None:  # one season of the spec's forecaster, in sync periods
            seasonal_periods = max(2, round(spec.forecaster.season_length_s / period_s))
        if seasonal_periods < 2 or stored_seasons < 2 or per_sync_period < 1:
            raise ValueError(
                "phpa: expected seasonal_periods >= 2, stored_seasons >= 2, per_sync_period >= 1 "
                f"(got {seasonal_periods}, {stored_seasons}, {per_sync_period})"
            )
        self.spec = spec
        self.hpa = HpaRpsPolicy(spec, target_rps_per_pod=target_rps_per_pod, tolerance=tolerance, period_s=period_s)
        self.target_rps_per_pod = float(target_rps_per_pod)  # the main knob as resolved
        self.alpha, self.beta, self.gamma = alpha, beta, gamma
        self.seasonal_periods = seasonal_periods
        self.stored_seasons = stored_seasons
        self.per_sync_period = per_sync_period
        self.downscale_stabilization_s = downscale_stabilization_s
        self.chronological_history = chronological_history
        self.warm_start = warm_start
        self.period_s = period_s
        self.history: list[tuple[float, int]] = []  # (time, calculated replicas), in upstream's order
        self.sync_periods_passed = 1
        self.decisions: list[tuple[float, int]] = []  # downscale stabilization history
        self._sorted_len = -1  # len(history) right after the last prune (sorted newest first), -1 = unknown
        # the replicas of `history` in its order are _buf[_lo:_hi] (kept in step by decide and prune;
        # _lo = -1: rebuild from `history`), so a sync copies no more than one value
        self._buf: FloatArray = np.empty(0)
        self._lo = self._hi = -1
        self._model = HoltWintersOneStep(seasonal_periods, alpha, beta, gamma)

    def start(self, ctx: PolicyContext) -> None:
        self.history = []
        self.sync_periods_passed = 1
        self.decisions = []
        self._sorted_len = -1
        self._lo = -1
        if self.warm_start and len(ctx.history_rps):
            self._seed(ctx)

    def _seed(self, ctx: PolicyContext) -> None:
        per_sync = max(1, round(self.period_s / ctx.history_step_s))
        rates = np.asarray(ctx.history_rps, dtype=np.float64)
        usable = len(rates) // per_sync * per_sync
        sync_rates = rates[len(rates) - usable :].reshape(-1, per_sync).mean(axis=1) if usable else rates[:0]
        keep = self.seasonal_periods * self.stored_seasons
        sync_rates = sync_rates[-keep:]
        t0 = ctx.start_s - len(sync_rates) * self.period_s
        for i, r in enumerate(sync_rates):
            n = math.ceil(float(r) / self.hpa.target_rps_per_pod) if math.isfinite(r) else self.spec.min_replicas
            self.history.append((t0 + i * self.period_s, max(self.spec.min_replicas, n)))

    def can_predict(self) -> bool:
        n = len(self.history)
        return n >= 2 * self.seasonal_periods and n >= 10 + 2 * (self.seasonal_periods // 2)

    def predict(self) -> int:
        """`GetPrediction`: 0 before enough history, else ceil of the one-step Holt-Winters forecast."""
        if not self.can_predict():
            return 0
        if self.chronological_history:
            series = self._replicas(sorted(self.history))
        else:
            if not self._in_step(len(self.history)):
                self._place(self._replicas(self.history))
            series = self._buf[self._lo : self._hi]
        return ceil_forecast(self._model.forecast(series))

    @staticmethod
    def _replicas(history: list[tuple[float, int]]) -> FloatArray:
        return np.fromiter((r for _, r in history), dtype=np.float64, count=len(history))

    def _in_step(self, length: int) -> bool:
        return self._lo >= 0 and self._hi - self._lo == length

    def _place(self, values: FloatArray) -> None:
        """Copy the replica values into a fresh buffer, near its end: the window drifts left one slot per sync."""
        n = len(values)
        self._buf = np.empty(4 * n + 64)
        self._lo, self._hi = 3 * n + 48, 4 * n + 48
        self._buf[self._lo : self._hi] = values

    def prune(self) -> None:
        """`PruneHistory`: sort newest first, keep whole seasons up to `storedSeasons`."""
        h = self.history
        if self._sorted_len == len(h) - 1 and (len(h) == 1 or h[-1][0] > h[0][0]):
            # Fast path: the rest is already newest first (the previous prune sorted it) and the
            # point just appended is strictly the newest, so the stable sort would move it to the
            # front and leave the others in place.
            h.insert(0, h.pop())
            if self._in_step(len(h)):  # the same move in the replica buffer
                if self._lo == 0:
                    self._place(self._buf[self._lo : self._hi])
                self._lo, self._hi = self._lo - 1, self._hi - 1
                self._buf[self._lo] = self._buf[self._hi]
            else:
                self._lo = -1
        else:
            h.sort(key=lambda tr: tr[0], reverse=True)
            self._lo = -1
        seasons_to_remove = len(self.history) // self.seasonal_periods - self.stored_seasons
        keep = len(self.history) - seasons_to_remove * self.seasonal_periods
        del self.history[keep:]
        if self._lo >= 0:
            self._hi = self._lo + keep
        self._sorted_len = len(self.history)

    def decide(self, view: ClusterView) -> PolicyOutput:
        calculated, detail = self.hpa.proposal(view)
        if calculated is None:  # the metric gather failed: the PHPA reconcile errors out, no scaling
            return PolicyOutput(desired_replicas=view.spec_replicas, reason=f"{detail}; no scaling")
        predictions = [calculated]
        self.history.append((view.now_s, calculated))
        if self._in_step(len(self.history) - 1):
            if self._hi == len(self._buf):
                self._place(self._buf[self._lo : self._hi])
            self._buf[self._hi] = calculated
            self._hi += 1
        else:
            self._lo = -1
        if self.sync_periods_passed >= self.per_sync_period:
            predictions.append(self.predict())
            self.sync_periods_passed = 1
        else:
            self.sync_periods_passed += 1
        self.prune()
        target = max(predictions)
        target = min(max(target, self.spec.min_replicas), self.spec.max_replicas)
        cutoff_s = view.now_s - self.downscale_stabilization_s
        self.decisions = [(t, r) for t, r in self.decisions if not t < cutoff_s]
        self.decisions.append((view.now_s, target))
        final = max(r for _, r in self.decisions)
        predicted = predictions[1] if len(predictions) > 1 else None
        note = "prediction unavailable (history too short)" if predicted == 0 else f"predicted {predicted}"
        return PolicyOutput(
            desired_replicas=final, reason=f"{detail}; calculated {calculated}, {note}, decision {final}"
        )
