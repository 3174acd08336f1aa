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
`forecast/` and the simulator fast. statsmodels' "estimated" initial states can differ slightly in
the first seasons.

PHPA keeps its history in a ConfigMap that starts empty; `warm_start=True` instead seeds it with
the HPA replicas the pre-start load history would have produced (not what upstream does).
"""

from __future__ import annotations

import itertools
import math
from typing import ClassVar

import numpy as np

from autoscaler.core.types import FloatArray
from autoscaler.sim.baselines.hpa import HPA_SYNC_PERIOD_S, HpaRpsPolicy
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
    `smoothed=False`, which skips storing the smoothed values: the PHPA hot path).
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

    def start(self, ctx: PolicyContext) -> None:
        self.history = []
        self.sync_periods_passed = 1
        self.decisions = []
        self._sorted_len = -1
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
        history = sorted(self.history) if self.chronological_history else self.history
        series = np.fromiter((r for _, r in history), dtype=np.float64, count=len(history))
        forecast = holt_winters_additive(
            series, self.seasonal_periods, self.alpha, self.beta, self.gamma, horizon=1, smoothed=False
        )
        return math.ceil(float(forecast[-1]))

    def prune(self) -> None:
        """`PruneHistory`: sort newest first, keep whole seasons up to `storedSeasons`."""
        h = self.history
        if self._sorted_len == len(h) - 1 and (len(h) == 1 or h[-1][0] > h[0][0]):
            # Fast path: the rest is already newest first (the previous prune sorted it) and the
            # point just appended is strictly the newest, so the stable sort would move it to the
            # front and leave the others in place.
            h.insert(0, h.pop())
        else:
            h.sort(key=lambda tr: tr[0], reverse=True)
        seasons_to_remove = len(self.history) // self.seasonal_periods - self.stored_seasons
        keep = len(self.history) - seasons_to_remove * self.seasonal_periods
        del self.history[keep:]
        self._sorted_len = len(self.history)

    def decide(self, view: ClusterView) -> PolicyOutput:
        calculated, detail = self.hpa.proposal(view)
        if calculated is None:  # the metric gather failed: the PHPA reconcile errors out, no scaling
            return PolicyOutput(desired_replicas=view.spec_replicas, reason=f"{detail}; no scaling")
        predictions = [calculated]
        self.history.append((view.now_s, calculated))
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
