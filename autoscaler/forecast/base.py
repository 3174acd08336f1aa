"""The `Forecaster` contract and the machinery every model shares: input checks, the variance-stabilising
transform, and prediction intervals from the model's own empirical h-step errors.

Owned here so that each model file only has to say how it fits, how it advances its state by one step
and what its point forecast is; intervals, clipping and the `Forecast` they produce behave the same for
every model, and the contract tests hold for all of them.

Intervals. At `fit`, each model reports its in-sample k-step errors (k = 1..max_horizon) on the
transformed scale; after that `update()` adds the errors of its own earlier forecasts as the data
arrives (the forecasts made 1..max_horizon steps ago are kept), so the intervals stay calibrated
between refits without refitting. The most recent `error_window` errors per horizon are used; their
empirical quantiles are recomputed every `recalibrate_every` updates (4 h at 60 s). Beyond `max_horizon` the last
horizon's quantiles are widened by sqrt(h / max_horizon).

Memory. The error matrix (max_horizon x error_window float64, 480 KB at the defaults) is the one copy
kept: a recalibration sorts it into a temporary, keeps only each row's mean, variance and the two
order statistics per tracked interval level (`track_levels`; 0.95 by default), and drops the sorted
copy, which the daemon would otherwise hold once more per target. A level first asked for between
recalibrations is computed from the errors at that moment and tracked from then on.

Transform. Load is counts per time: its noise grows with the level (Poisson-like), so the models work on
z = sqrt(y) by default, where the variance is roughly constant and additive seasonality fits both quiet
nights and busy days. Back on the rate scale the interval ends are the squared quantiles (the square is
monotone) and the mean is (mu + mean(e))^2 + var(e), so the mean is the mean, not the median. `"none"`
and `"log1p"` are available; `benchmarks/forecast_accuracy.py` compares them.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar, Protocol, Self

import numpy as np

from autoscaler.core.types import FloatArray, Forecast


class ForecastError(ValueError):
    """Input a forecaster cannot use; the message names the model, the input and what was expected."""


class Forecaster(Protocol):
    """A load forecaster: hyperparameters in `__init__`, then fit / update / predict."""

    name: ClassVar[str]

    def fit(self, y: FloatArray, step_s: float) -> Self: ...

    def update(self, y_new: FloatArray) -> None: ...

    def predict(self, h: int, *, origin_s: float, level: float = 0.95) -> Forecast: ...


def check_series(y: FloatArray, *, model: str, min_length: int, what: str = "y") -> FloatArray:
    """A finite, non-negative float64 copy of y, or a ForecastError saying what is wrong."""
    arr = np.asarray(y, dtype=np.float64)
    if arr.ndim != 1:
        raise ForecastError(f"{model}: {what} must be 1-D (got shape {arr.shape})")
    bad = ~np.isfinite(arr)
    if bad.any():
        i = int(np.argmax(bad))
        raise ForecastError(
            f"{model}: {what}[{i}] is {arr[i]} (expected finite rates; fill or drop missing data first)"
        )
    if len(arr) < min_length:
        raise ForecastError(f"{model}: {what} has {len(arr)} points (expected at least {min_length})")
    if (arr < 0).any():
        i = int(np.argmax(arr < 0))
        raise ForecastError(f"{model}: {what}[{i}] is {arr[i]} (expected a rate >= 0)")
    return arr.copy()


@dataclass(frozen=True)
class Transform:
    name: str
    forward: Callable[[FloatArray], FloatArray]
    inverse: Callable[[FloatArray], FloatArray]  # clips at the boundary of the domain


def _sqrt_inv(z: FloatArray) -> FloatArray:
    return np.square(np.maximum(z, 0.0))


def _log1p_inv(z: FloatArray) -> FloatArray:
    return np.maximum(np.expm1(z), 0.0)


def _identity(y: FloatArray) -> FloatArray:
    return y


def _identity_inv(z: FloatArray) -> FloatArray:
    return np.maximum(z, 0.0)


TRANSFORMS: dict[str, Transform] = {
    "sqrt": Transform("sqrt", np.sqrt, _sqrt_inv),
    "log1p": Transform("log1p", np.log1p, _log1p_inv),
    "none": Transform("none", _identity, _identity_inv),
}


def _pick_transform(name: str, model: str) -> Transform:
    if name not in TRANSFORMS:
        raise ForecastError(f"{model}: transform {name!r} is unknown (expected one of {sorted(TRANSFORMS)})")
    return TRANSFORMS[name]


class ErrorIntervalForecaster(ABC):
    """Base of every model: subclasses provide the fit, one-step state update and point forecast
    on the transformed scale; this class turns them into calibrated, clipped `Forecast`s."""

    name: ClassVar[str]
    fits: int  # number of (expensive) fits done; update() never changes it

    def __init__(
        self,
        *,
        transform: str = "sqrt",
        max_horizon: int = 30,
        error_window: int = 2_000,
        recalibrate_every: int = 240,
    ) -> None:
        if max_horizon < 1 or error_window < 10 or recalibrate_every < 1:
            raise ForecastError(
                f"{self.name}: max_horizon >= 1, error_window >= 10, recalibrate_every >= 1 expected "
                f"(got {max_horizon}, {error_window}, {recalibrate_every})"
            )
        self.transform = _pick_transform(transform, self.name)
        self.max_horizon = max_horizon
        self.error_window = error_window
        self.recalibrate_every = recalibrate_every
        self.step_s = 0.0
        self.fits = 0
        self.n_obs = 0
        self._errors = np.full((max_horizon, error_window), np.nan)
        self._err_pos = 0
        self._pending = np.full((max_horizon, max_horizon), np.nan)
        self._since_calibration = 0
        self._quantiles: dict[tuple[int, float], tuple[FloatArray, FloatArray, FloatArray, FloatArray]] = {}
        self._err_mean = np.zeros(max_horizon)
        self._err_var = np.zeros(max_horizon)
        # level -> (lower, upper) error quantile per horizon, as of the last recalibration
        self._level_q: dict[float, tuple[FloatArray, FloatArray]] = {}
        self._levels: set[float] = {0.95}

    def track_levels(self, levels: tuple[float, ...]) -> None:
        """Interval levels whose error quantiles every recalibration keeps (call before `fit`)."""
        self._levels.update(levels)

    # ---- subclass hooks (all on the transformed scale) ----
    @abstractmethod
    def min_length(self) -> int:
        """Fewest points `fit` accepts."""

    @abstractmethod
    def _fit_z(self, z: FloatArray) -> FloatArray:
        """Fit on z; return in-sample errors E (max_horizon x len(z)): E[k-1, t] = z[t] - forecast of
        z[t] made at t-k (NaN where that origin does not exist)."""

    @abstractmethod
    def _step_z(self, z: float) -> None:
        """Advance the state by one observation (NaN = missing: advance with zero correction)."""

    @abstractmethod
    def _point_z(self, h: int) -> FloatArray:
        """Point forecast of the next h values of z."""

    # ---- the Forecaster API ----
    def fit(self, y: FloatArray, step_s: float) -> Self:
        if not (math.isfinite(step_s) and step_s > 0):
            raise ForecastError(f"{self.name}: step_s must be > 0 (got {step_s})")
        arr = check_series(y, model=self.name, min_length=self.min_length())
        z = self.transform.forward(arr)
        errs = self._fit_z(z)
        self.step_s = float(step_s)
        self.fits += 1
        self.n_obs = len(arr)
        w = min(self.error_window, errs.shape[1])
        self._errors.fill(np.nan)
        self._errors[:, :w] = errs[:, errs.shape[1] - w :]
        self._err_pos = w % self.error_window
        self._pending.fill(np.nan)
        self._pending[0] = self._point_z(self.max_horizon)
        self._recalibrate()
        return self

    def update(self, y_new: FloatArray) -> None:
        """Feed new observations (NaN = missing) without refitting; cheap: O(max_horizon) per point."""
        if self.fits == 0:
            raise ForecastError(f"{self.name}: update() before fit()")
        arr = np.atleast_1d(np.asarray(y_new, dtype=np.float64))
        if len(arr) == 0:
            return
        if arr.ndim != 1:
            raise ForecastError(f"{self.name}: y_new must be 1-D (got shape {arr.shape})")
        if (arr < 0).any() or np.isinf(arr).any():
            raise ForecastError(f"{self.name}: y_new has negative or infinite rates {arr.tolist()[:5]}")
        z_new = self.transform.forward(arr)
        diag = np.diagonal(self._pending)
        for v in z_new:
            z = float(v)
            self._errors[:, self._err_pos] = z - diag  # NaN where unknown (missing value or no forecast)
            self._err_pos = (self._err_pos + 1) % self.error_window
            self._step_z(z)
            self.n_obs += 1
            self._pending[1:] = self._pending[:-1]
            self._pending[0] = self._point_z(self.max_horizon)
            self._since_calibration += 1
            if self._since_calibration >= self.recalibrate_every:
                self._recalibrate()

    def predict(self, h: int, *, origin_s: float, level: float = 0.95) -> Forecast:
        if self.fits == 0:
            raise ForecastError(f"{self.name}: predict() before fit()")
        if h < 1:
            raise ForecastError(f"{self.name}: horizon h must be >= 1 step (got {h})")
        if not 0.0 < level < 1.0:
            raise ForecastError(f"{self.name}: level must be in (0, 1) (got {level})")
        mu = self._point_z(h)
        q_lo, q_hi, e_mean, e_var = self._terms(h, level)
        inv = self.transform.inverse
        lo = inv(mu + q_lo)
        hi = inv(mu + q_hi)
        mean = np.minimum(np.maximum(self._mean(mu, e_mean, e_var), lo), hi)
        return Forecast(
            origin_s=float(origin_s),
            step_s=self.step_s,
            mean=mean,
            lo=lo,
            hi=hi,
            level=level,
            model=self.name,
        )

    # ---- intervals ----
    def _recalibrate(self) -> None:
        self._since_calibration = 0
        self._quantiles.clear()
        self._level_q = self._order_statistics(self._levels, keep_moments=True)

    def _order_statistics(
        self, levels: set[float], *, keep_moments: bool
    ) -> dict[float, tuple[FloatArray, FloatArray]]:
        """Per-horizon (lo, hi) error quantiles of the current errors for each level (and, with
        `keep_moments`, each row's mean and variance). The sorted copy is a temporary."""
        ordered = np.sort(self._errors, axis=1)  # NaN sort to the end of each row
        valid = np.sum(~np.isnan(self._errors), axis=1)
        probs = sorted({p for lv in levels for p in ((1.0 - lv) / 2.0, 1.0 - (1.0 - lv) / 2.0)})
        stats = {p: np.empty(self.max_horizon) for p in probs}
        fallback: FloatArray = np.zeros(1)
        for k in range(self.max_horizon):
            row = ordered[k, : valid[k]]
            if len(row) < 20:  # too few errors at this horizon: borrow the previous horizon's
                row = fallback
            fallback = row
            if keep_moments:
                self._err_mean[k] = float(row.mean())
                self._err_var[k] = float(row.var())
            for p in probs:
                stats[p][k] = _sorted_quantile(row, p)
        out = {}
        for lv in levels:
            a = (1.0 - lv) / 2.0
            out[lv] = (stats[a], stats[1.0 - a])
        return out

    def _terms(self, h: int, level: float) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray]:
        """Per-step error quantiles (lo, hi), mean and variance for horizon h, widened beyond
        max_horizon by sqrt(h / max_horizon); cached until the next recalibration."""
        cached = self._quantiles.get((h, level))
        if cached is None:
            q = self._level_q.get(level)
            if q is None:  # a level not tracked so far: from the errors as they are now, tracked from now on
                self._levels.add(level)
                q = self._order_statistics({level}, keep_moments=False)[level]
                self._level_q[level] = q
            q_lo, q_hi = q
            k = np.minimum(np.arange(h), self.max_horizon - 1)
            widen = np.sqrt(np.maximum(np.arange(1, h + 1) / self.max_horizon, 1.0))
            cached = (q_lo[k] * widen, q_hi[k] * widen, self._err_mean[k] * widen, self._err_var[k] * widen**2)
            self._quantiles[(h, level)] = cached
        return cached

    def _mean(self, mu: FloatArray, e_mean: FloatArray, e_var: FloatArray) -> FloatArray:
        """Mean on the rate scale of mu + e, e the empirical error (bias-corrected back-transform)."""
        centre = mu + e_mean
        name = self.transform.name
        if name == "sqrt":
            out: FloatArray = np.square(np.maximum(centre, 0.0)) + e_var
        elif name == "log1p":
            out = np.maximum(np.expm1(centre + e_var / 2.0), 0.0)
        else:
            out = np.maximum(centre, 0.0)
        return out


def _sorted_quantile(row: FloatArray, q: float) -> float:
    """Linear-interpolated quantile of an already sorted array (numpy's default method)."""
    pos = q * (len(row) - 1)
    i = int(pos)
    j = min(i + 1, len(row) - 1)
    return float(row[i] + (row[j] - row[i]) * (pos - i))
