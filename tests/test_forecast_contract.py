"""Contract tests run once against every registered forecaster (parametrized over registry.names())."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from autoscaler.forecast import registry
from autoscaler.forecast.base import ErrorIntervalForecaster, ForecastError

M = 24  # season length in steps (kept small so the whole set runs in seconds)
STEP_S = 60.0
MODELS = registry.names()


def seasonal_series(n: int, *, noise: float, seed: int = 0, level: float = 50.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    y = level + 20.0 * np.sin(2 * np.pi * t / M) + 8.0 * np.cos(4 * np.pi * t / M)
    return np.maximum(y + rng.normal(0.0, noise, n), 0.0)


def fitted(name: str, y: np.ndarray, **kw: object) -> ErrorIntervalForecaster:
    return registry.create(name, season_length=M, **kw).fit(y, STEP_S)


def test_registry_lists_the_models() -> None:
    assert {"seasonal-naive", "holt-winters", "holt", "naive"} <= set(MODELS)
    with pytest.raises(ForecastError, match=r"'nope' is unknown .*holt-winters"):
        registry.create("nope", season_length=M)
    with pytest.raises(ForecastError, match=r"'ets' is unknown"):
        registry.create("ets", season_length=M)  # no silent aliases: a name means that model


@pytest.mark.parametrize("name", MODELS)
def test_shapes_order_and_non_negative(name: str) -> None:
    # a series that touches zero: raw point forecasts could go negative; the forecast must not
    y = seasonal_series(10 * M, noise=4.0, level=15.0)
    fc = fitted(name, y).predict(12, origin_s=1_000.0, level=0.9)
    assert fc.horizon == 12 and fc.origin_s == 1_000.0 and fc.step_s == STEP_S and fc.model == name
    assert fc.level == 0.9
    assert np.all(fc.lo <= fc.mean + 1e-12) and np.all(fc.mean <= fc.hi + 1e-12)
    assert np.all(fc.lo >= 0.0)
    assert np.all(np.isfinite(fc.mean)) and np.all(fc.hi > fc.lo)


@pytest.mark.parametrize("name", MODELS)
def test_level_widens_interval_and_is_deterministic(name: str) -> None:
    y = seasonal_series(10 * M, noise=3.0)
    a, b = fitted(name, y), fitted(name, y)
    f80 = a.predict(6, origin_s=0.0, level=0.8)
    f99 = a.predict(6, origin_s=0.0, level=0.99)
    assert np.all(f99.hi - f99.lo > f80.hi - f80.lo)
    np.testing.assert_array_equal(f80.mean, b.predict(6, origin_s=0.0, level=0.8).mean)
    np.testing.assert_array_equal(f99.hi, b.predict(6, origin_s=0.0, level=0.99).hi)


@pytest.mark.parametrize("name", MODELS)
def test_update_advances_state_without_refitting(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    y = seasonal_series(12 * M, noise=2.0)
    model = fitted(name, y[: 10 * M])
    before = model.predict(3, origin_s=0.0).mean

    def no_fit(*_a: object, **_k: object) -> None:
        raise AssertionError("update() must not refit")

    monkeypatch.setattr(model, "_fit_z", no_fit)
    import statsmodels.tsa.holtwinters as hw

    monkeypatch.setattr(hw.ExponentialSmoothing, "fit", no_fit)
    model.update(y[10 * M : 10 * M + 5])
    assert model.fits == 1 and model.n_obs == 10 * M + 5
    after = model.predict(3, origin_s=0.0).mean
    assert not np.allclose(before, after)  # the state moved with the data
    model.update(np.array([np.nan]))  # missing value: accepted, state carried forward
    assert np.all(np.isfinite(model.predict(3, origin_s=0.0).mean))


@pytest.mark.parametrize("name", MODELS)
def test_clear_errors_on_bad_input(name: str) -> None:
    need = registry.min_length(name, M)
    with pytest.raises(ForecastError, match=rf"{name}: y has {need - 1} points \(expected at least {need}\)"):
        fitted(name, np.ones(need - 1))
    y = seasonal_series(10 * M, noise=1.0)
    y[7] = np.nan
    with pytest.raises(ForecastError, match=rf"{name}: y\[7\] is nan \(expected finite"):
        fitted(name, y)
    y[7] = -1.0
    with pytest.raises(ForecastError, match=r"y\[7\] is -1.0 \(expected a rate >= 0\)"):
        fitted(name, y)
    with pytest.raises(ForecastError, match="before fit"):
        registry.create(name, season_length=M).predict(3, origin_s=0.0)
    model = fitted(name, seasonal_series(10 * M, noise=1.0))
    with pytest.raises(ForecastError, match="level must be in"):
        model.predict(3, origin_s=0.0, level=1.5)


@pytest.mark.parametrize("name", [n for n in MODELS if registry.is_seasonal(n)])
def test_pure_seasonal_signal_is_forecast_almost_perfectly(name: str) -> None:
    y = seasonal_series(10 * M, noise=0.0)
    truth = seasonal_series(11 * M, noise=0.0)[10 * M :]
    fc = fitted(name, y).predict(M, origin_s=0.0)
    rel_err = np.abs(fc.mean - truth) / truth.mean()
    assert rel_err.max() < 0.02, f"{name} misses a noiseless season by {rel_err.max():.3f}"


@pytest.mark.parametrize("name", MODELS)
def test_interval_coverage_near_nominal_on_noisy_series(name: str) -> None:
    y = seasonal_series(40 * M, noise=5.0, seed=3)
    train = 20 * M
    model = fitted(name, y[:train], error_window=2_000)
    hits = []
    for i in range(train, len(y) - 1):
        fc = model.predict(2, origin_s=0.0, level=0.9)
        hits.append(fc.lo[1] <= y[i + 1] <= fc.hi[1])
        model.update(y[i : i + 1])
    coverage = float(np.mean(hits))
    assert 0.84 <= coverage <= 0.96, f"{name}: 90 % interval covered {coverage:.3f}"


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("transform", ["sqrt", "none"])
def test_fitted_model_pickles_and_predicts_the_same(name: str, transform: str) -> None:
    model = fitted(name, seasonal_series(10 * M, noise=2.0), transform=transform)
    clone = pickle.loads(pickle.dumps(model))
    np.testing.assert_array_equal(clone.predict(5, origin_s=0.0).hi, model.predict(5, origin_s=0.0).hi)
    assert len(pickle.dumps(model)) < 2_000_000


def test_fit_model_is_module_level_for_process_pools() -> None:
    y = seasonal_series(10 * M, noise=1.0)
    model = registry.fit_model("holt-winters", y, STEP_S, M)
    assert model.fits == 1 and model.name == "holt-winters"
    assert pickle.loads(pickle.dumps(registry.fit_model)) is registry.fit_model
