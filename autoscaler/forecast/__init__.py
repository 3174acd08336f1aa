"""Load forecasting: the only package that imports statsmodels (and only inside model fits).

`base` (the Forecaster contract, empirical intervals), one module per model (`seasonal_naive`,
`holt_winters`, `holt`, `profile_holt`), `registry` (names, create, picklable `fit_model`), `auto`
(backtest selection) and `driver` (ForecastDriver, the per-target loop shared by daemon and simulator).
"""
