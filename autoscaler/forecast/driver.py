"""ForecastDriver: the per-target forecasting loop shared by the simulator's predictive policy and the daemon.

Owned here so both shells turn a stream of observed rates into forecasts the same way:
* observations are averaged into `spec.step_s` buckets on a fixed grid; a bucket with no (or only
  missing/NaN) observations is *missing* (NaN), never zero (DESIGN.md safety rule 5). Completed buckets
  are fed to the model with `update()`; a missing bucket advances the state with no correction.
* warm start from history (`warm_start`), e.g. fetched from Prometheus or the trace before the replay.
* the model is refitted on the recent `spec.history_s` (missing buckets imputed for the fit only: same
  phase one season earlier, else linear interpolation); with `spec.model == "auto"` every refit is a
  re-selection by backtest (auto.select). Refits happen every `refit_interval_s` =
  max(spec.refit_interval_s, min_refit_interval_s); `min_refit_interval_s` defaults to one season.
  Why the floor: a seasonal fit costs 0.1-0.3 s (statsmodels' optimiser carries the 1,440 fixed
  initial seasonal states of a daily season at 60 s), which a weeks-long replay cannot pay hourly, and
  smoothing constants estimated on four seasons barely move within one. Between refits the state is
  updated every step and the intervals are recalibrated from the model's own fresh errors every 4 h
  (base.py), so the forecast adapts within the hour anyway. While the driver runs on the short-history
  fallback it refits every spec.refit_interval_s (cheap fits), so it switches to a seasonal model as
  soon as two seasons are there; while the fallback was fitted on very few points (fewer than
  holt.SHORT_HISTORY, a cold start) it is refitted on every new bucket (a fit on < 30 points takes
  milliseconds), so a ramp seen in the first minutes is not extrapolated for an hour.
  The daemon may pass min_refit_interval_s=0 and refit in a process pool.
* `forecast(now_s, horizon_s)` is cached until a new bucket completes, so calling it every decision
  tick costs a dictionary lookup. Measured (benchmarks/forecast_accuracy.py, `driver_7day_replay`):
  a 7-day replay at 15 s ticks with the spec defaults (auto, 60 s steps, daily season, 14-day warm
  start from the 1 s NASA trace) spends ~2 s of CPU in forecasting in total, selection included.
* with less than two seasons of history the driver forecasts with the short-history model and says so
  in `Forecast.note`; it returns None only while it has fewer than 10 valid buckets.

* history is a float64 ring buffer of `history_len` buckets (161 KB for 14 days at 60 s; a list of
  Python floats trimmed at twice that length held ~1.3 MB per target), and the trailing-missing count
  is a counter, so the daemon can hold 1,000 drivers.
* `defer_refits=True` (the daemon's forecast worker, runtime/forecast_pool.py): `forecast()` never runs a
  scheduled refit; it keeps forecasting with the last model and reports `refit_due()`, and the worker
  calls `refit()` for one target at a time between ticks, most overdue first. The first model of a
  warm-started target is the cheap seasonal naive (milliseconds) when two seasons are there, so the
  first tick does not wait for 1,000 selections; its first real refit is due at once, and the one after
  it at a per-target phase (`stagger`, a fraction of the interval) so refits spread over the interval.
  The interim model learns no surge reserve (core/surge.py costs 50-160 ms on 14 days, the bulk of a
  1,000-target first tick); the first real refit does.

Fitted state is plain floats and arrays; `registry.fit_model` is module-level for a process pool.
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np

from autoscaler.core.surge import SURGE_POOL_QUANTILE, SURGE_PRIOR_RATIO, surge_ratios, surge_settings
from autoscaler.core.types import FloatArray, Forecast
from autoscaler.forecast.auto import FALLBACK_MODEL, MIN_POINTS, select
from autoscaler.forecast.base import ErrorIntervalForecaster, ForecastError
from autoscaler.forecast.registry import create, fit_model, names
from autoscaler.spec.types import ForecasterSpec, ServingAutoscalerSpec


def impute(y: FloatArray, season_length: int) -> FloatArray:
    """Fill NaN for fitting: same phase one season earlier when known, else linear interpolation."""
    out = y.copy()
    nan = np.isnan(out)
    if not nan.any():
        return out
    m = season_length
    if 1 < m < len(out):
        idx = np.flatnonzero(nan)
        idx = idx[idx >= m]
        out[idx] = out[idx - m]  # may still be NaN when that phase was missing too
        nan = np.isnan(out)
    valid = np.flatnonzero(~nan)
    out[nan] = np.interp(np.flatnonzero(nan), valid, out[valid])
    return out


class ForecastDriver:
    def __init__(
        self,
        spec: ForecasterSpec,
        *,
        min_refit_interval_s: float | None = None,
        defer_refits: bool = False,
        stagger: float = 0.0,
        selection_horizon_s: float = 300.0,
        surge_budget: float | None = None,
        surge_base_s: float = 300.0,
        surge_max_s: float = 900.0,
        surge_pool_quantile: float | None = None,
    ) -> None:
        if spec.step_s <= 0 or spec.season_length_s < spec.step_s or spec.history_s < spec.step_s:
            raise ForecastError(
                f"forecaster spec: step_s > 0 and season_length_s, history_s >= step_s expected "
                f"(got step_s={spec.step_s}, season_length_s={spec.season_length_s}, history_s={spec.history_s})"
            )
        if spec.model != "auto" and spec.model not in names():
            raise ForecastError(f"forecaster spec: model {spec.model!r} is unknown (expected auto or {names()})")
        self.spec = spec
        self.step_s = float(spec.step_s)
        self.season_length = max(round(spec.season_length_s / spec.step_s), 1)
        self.history_len = math.ceil(spec.history_s / spec.step_s)
        floor_s = float(spec.season_length_s) if min_refit_interval_s is None else min_refit_interval_s
        self.refit_interval_s = max(float(spec.refit_interval_s), floor_s)
        self.selection_horizon = max(round(selection_horizon_s / spec.step_s), 1)
        self._ring = np.full(self.history_len, np.nan)  # the last history_len completed buckets (NaN = missing)
        self._ring_n = 0  # buckets held (<= history_len)
        self._ring_end = 0  # index after the newest bucket
        self._trailing_nan = 0  # completed buckets since the last valid one
        self.defer_refits = defer_refits
        self.stagger = stagger % 1.0
        self._interim = False  # forecasting with the deferred mode's stand-in until the first refit
        self._grid0: float | None = None  # start time of bucket 0
        self._n_done = 0  # completed buckets since grid0
        self._acc_sum = 0.0
        self._acc_n = 0
        self._model: ErrorIntervalForecaster | None = None
        self._fed = 0  # completed buckets the model has seen
        self._note = ""
        self._fallback = False
        self._last_fit_s = -math.inf
        self._cache: tuple[tuple[int, int, int], Forecast] | None = None
        # surge reserve (core/surge.py), learned at every refit from the kept history
        self.surge_budget = surge_budget
        self.surge_base_s = surge_base_s
        self.surge_base_steps = max(1, round(surge_base_s / spec.step_s))
        self.surge_max_steps = max(1, math.ceil(surge_max_s / spec.step_s))
        self.surge_pool_quantile = surge_pool_quantile
        self.surge: tuple[float, ...] = ()
        self.surge_learned = True
        self.surge_cap_rps: float | None = None
        self.fit_count = 0
        self.select_count = 0
        self.late_observations = 0

    # ---- input ----
    def warm_start(self, history_rps: FloatArray, end_s: float, *, step_s: float | None = None) -> None:
        """Seed with per-step history ending at end_s (NaN = missing). A history on a finer grid
        (`step_s` dividing spec.step_s) is averaged to the spec's step, ignoring NaN."""
        hist = np.asarray(history_rps, dtype=np.float64)
        src_step = self.step_s if step_s is None else float(step_s)
        if hist.ndim != 1 or src_step <= 0:
            raise ForecastError(f"warm_start: history must be 1-D with step_s > 0 (got {hist.shape}, {src_step})")
        ratio = self.step_s / src_step
        if abs(ratio - round(ratio)) > 1e-9 or ratio < 1:
            raise ForecastError(
                f"warm_start: history step {src_step:g} s must divide the forecast step {self.step_s:g} s"
            )
        r = round(ratio)
        usable = (len(hist) // r) * r
        hist = hist[len(hist) - usable :]
        if r > 1 and usable:
            blocks = hist.reshape(-1, r)
            with np.errstate(invalid="ignore"):
                counts = np.sum(~np.isnan(blocks), axis=1)
                hist = np.where(counts > 0, np.nansum(blocks, axis=1) / np.maximum(counts, 1), np.nan)
        hist = np.where(hist >= 0, hist, np.nan)  # negative rates are invalid data
        kept = hist[-self.history_len :]
        self._ring.fill(np.nan)
        self._ring[: len(kept)] = kept
        self._ring_n = len(kept)
        self._ring_end = len(kept) % self.history_len
        valid = np.flatnonzero(~np.isnan(kept))
        self._trailing_nan = len(kept) - 1 - int(valid[-1]) if len(valid) else len(kept)
        self._grid0 = float(end_s) - len(hist) * self.step_s
        self._n_done = len(hist)
        self._acc_sum, self._acc_n = 0.0, 0
        self._model, self._fed, self._cache = None, 0, None
        self._last_fit_s = -math.inf

    def observe(self, time_s: float, rate_rps: float | None) -> None:
        """One observed rate (requests/s) at time_s; None or NaN is missing data, never zero."""
        if self._grid0 is None:
            self._grid0 = math.floor(time_s / self.step_s) * self.step_s
        b = math.floor((time_s - self._grid0) / self.step_s)
        if b < self._n_done:
            self.late_observations += 1
            return
        self._close_until(b)
        if rate_rps is not None and math.isfinite(rate_rps) and rate_rps >= 0:
            self._acc_sum += rate_rps
            self._acc_n += 1

    def _close_until(self, b: int) -> None:
        """Complete every bucket before index b."""
        if b <= self._n_done:
            return
        self._append(self._acc_sum / self._acc_n if self._acc_n else math.nan)
        self._acc_sum, self._acc_n = 0.0, 0
        empty = b - self._n_done
        if empty > self.history_len:  # a very long silence: keep only what history can hold
            self._fed = max(self._fed, self._n_done + empty - self.history_len)
        for _ in range(min(empty, self.history_len)):
            self._append(math.nan)
        self._n_done = b

    def _append(self, v: float) -> None:
        self._ring[self._ring_end] = v
        self._ring_end = (self._ring_end + 1) % self.history_len
        self._ring_n = min(self._ring_n + 1, self.history_len)
        self._n_done += 1
        self._trailing_nan = self._trailing_nan + 1 if math.isnan(v) else 0

    def _tail(self, n: int) -> FloatArray:
        """A copy of the newest min(n, held) buckets, oldest first."""
        n = min(n, self._ring_n)
        start = self._ring_end - n
        if start >= 0:
            return self._ring[start : self._ring_end].copy()
        return np.concatenate((self._ring[start:], self._ring[: self._ring_end]))

    @property
    def values(self) -> FloatArray:
        """The kept history (completed buckets, NaN = missing), oldest first."""
        return self._tail(self.history_len)

    # ---- output ----
    @property
    def model_name(self) -> str | None:
        return None if self._model is None else self._model.name

    @property
    def note(self) -> str:
        return self._note

    def forecast(self, now_s: float, horizon_s: float) -> Forecast | None:
        """Forecast from the last completed bucket to now_s + horizon_s; None until enough data."""
        if self._grid0 is None:
            return None
        self._close_until(math.floor((now_s - self._grid0) / self.step_s))
        if self._model is None or (self._short_history() and self._n_done > self._fed):
            self._refit(now_s, interim=self.defer_refits)  # cheap: a first model, or a fit on < 30 points
        elif not self.defer_refits and self.refit_due(now_s) is not None:
            self._refit(now_s)
        if self._model is None:
            return None
        self._feed()
        origin_s = self._grid0 + self._n_done * self.step_s
        # cover now_s + horizon_s wherever now_s falls inside the open bucket: h stays the same for
        # every tick of one bucket, so the cached forecast is reused until the next bucket completes
        h = max(math.ceil(horizon_s / self.step_s - 1e-9), 0) + 1
        key = (self._n_done, h, self.fit_count)
        if self._cache is not None and self._cache[0] == key:
            return self._cache[1]
        fc = self._model.predict(h, origin_s=origin_s, level=self.spec.level)
        note = self._note
        missing = self._trailing_missing()
        if missing:
            note = f"{note}; last {missing} step(s) missing: state carried forward".lstrip("; ")
        fc = replace(
            fc, note=note, surge=self.surge, surge_cap_rps=self.surge_cap_rps, surge_learned=self.surge_learned
        )
        self._cache = (key, fc)
        return fc

    def refit_due(self, now_s: float) -> float | None:
        """Seconds the scheduled refit is overdue at now_s (>= 0), or None when none is due."""
        if self._model is None:
            return None
        if self._interim:
            return now_s - self._last_fit_s
        interval_s = self.spec.refit_interval_s if self._fallback else self.refit_interval_s
        over_s = now_s - self._last_fit_s - interval_s
        return over_s if over_s >= 0 else None

    def refit(self, now_s: float) -> None:
        """The scheduled refit, run by the caller (deferred mode); the state catches up on the next forecast."""
        if self._grid0 is not None:
            self._close_until(math.floor((now_s - self._grid0) / self.step_s))
        first = self._interim
        self._refit(now_s)
        if first and self.defer_refits and not self._interim:  # spread the next refits over the interval
            interval_s = self.spec.refit_interval_s if self._fallback else self.refit_interval_s
            self._last_fit_s = now_s - self.stagger * interval_s

    def _short_history(self) -> bool:
        """The model was fitted on so few points that it must be refitted on every new bucket (holt.py)."""
        return bool(getattr(self._model, "short_history_mode", False))

    def _trailing_missing(self) -> int:
        return min(self._trailing_nan, self._ring_n)

    def _feed(self) -> None:
        assert self._model is not None
        new = self._n_done - self._fed
        if new > 0:
            self._model.update(self._tail(new))
            self._fed = self._n_done

    def _refit(self, now_s: float, *, interim: bool = False) -> None:
        history = self._tail(self.history_len)
        valid = np.flatnonzero(~np.isnan(history))
        if len(valid) < MIN_POINTS:
            return
        y = history[valid[0] :]
        last = int(np.flatnonzero(~np.isnan(y))[-1])
        fit_y, trailing = impute(y[: last + 1], self.season_length), y[last + 1 :]
        self._interim = False
        if interim and len(fit_y) >= 2 * self.season_length > 2:
            model = create("seasonal-naive", season_length=self.season_length)
            model.track_levels((self.spec.level,))
            model.fit(fit_y, self.step_s)
            self._note, self._fallback, self._interim = "seasonal-naive until the first refit", False, True
        elif self.spec.model == "auto":
            sel = select(
                fit_y, self.step_s, self.season_length, horizon=self.selection_horizon, levels=(self.spec.level,)
            )
            model, self._note, self._fallback = sel.forecaster, sel.note, sel.fallback
            self.select_count += 1
        else:
            model, self._note, self._fallback = self._fit_named(self.spec.model, fit_y)
        if len(trailing):
            model.update(trailing)
        self._model = model
        self._fed = self._n_done
        self._last_fit_s = now_s
        if self.surge_budget is not None and not self._interim:
            learned: tuple[float, ...] = ()
            if not self._short_history():
                learned = surge_ratios(
                    history,
                    self.surge_max_steps,
                    self.surge_budget,
                    base_steps=self.surge_base_steps,
                    season_steps=self.season_length,
                    pool_quantile=self.surge_pool_quantile,
                )
            finite = history[np.isfinite(history)]
            self.surge_learned = bool(learned)
            # too little history to learn from: the start-up prior, with no cap (no peak to cap it at)
            self.surge = learned or (SURGE_PRIOR_RATIO,) * self.surge_max_steps
            self.surge_cap_rps = float(finite.max()) if learned and len(finite) else None
        self.fit_count += 1
        self._cache = None

    def _fit_named(self, name: str, y: FloatArray) -> tuple[ErrorIntervalForecaster, str, bool]:
        need = create(name, season_length=self.season_length).min_length()
        if len(y) >= need:
            return fit_model(name, y, self.step_s, self.season_length, levels=(self.spec.level,)), "", False
        hours = len(y) * self.step_s / 3600.0
        note = (
            f"{name} needs {need} steps ({need * self.step_s / 3600.0:.1f} h) of history, have {hours:.1f} h: "
            f"using {FALLBACK_MODEL} without seasonality until there is enough"
        )
        return fit_model(FALLBACK_MODEL, y, self.step_s, self.season_length, levels=(self.spec.level,)), note, True


def driver_for(
    spec: ServingAutoscalerSpec,
    *,
    min_refit_interval_s: float | None = 0.0,
    surge_share: float | None = None,
    surge_pool: float | str | None = None,
) -> ForecastDriver:
    """The forecast driver of one target, as the daemon and the simulator both build it: refitting every
    `refitIntervalSeconds` as the spec says (`min_refit_interval_s=0`; None raises it to one season, a
    what-if) (`surge_share`, `surge_pool`: the simulator's what-ifs of `core.surge.SURGE_BUDGET_SHARE` and
    `SURGE_POOL_QUANTILE`; `surge_pool="history"` pools the whole history as one)."""
    budget, base_s = surge_settings(spec) if surge_share is None else surge_settings(spec, surge_share)
    if surge_pool is None:
        pool_q = SURGE_POOL_QUANTILE
    elif surge_pool == "history":
        pool_q = None
    elif isinstance(surge_pool, float | int) and 0.0 < float(surge_pool) <= 1.0:
        pool_q = float(surge_pool)
    else:
        raise ForecastError(f"surge_pool: expected 'history' or a quantile in (0, 1] (got {surge_pool!r})")
    return ForecastDriver(
        spec.forecaster,
        min_refit_interval_s=min_refit_interval_s,
        surge_budget=budget,
        surge_base_s=base_s,
        surge_pool_quantile=pool_q,
    )
