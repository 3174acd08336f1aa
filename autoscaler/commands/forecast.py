"""`tfserving-autoscaler forecast`: fit the forecasters on a trace, print the backtest, forecast ahead.

Owned here so an operator can see, before enabling the predictive policy, which model the daemon
would pick for their traffic shape and how good it is: the trace is aggregated to `--step-s`, the
models are compared by rolling-origin backtest (MASE at `--horizon-s`, coverage of the central
interval) exactly as the daemon's `auto` selection does, and the chosen model forecasts
`--horizon-s` past the end of the window. `--plot` draws the recent history, the backtest's
h-step-ahead forecasts with their interval, and the forecast ahead.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np

from autoscaler.core.types import FloatArray
from autoscaler.forecast.auto import BACKTEST_STEPS, Selection, backtest, select
from autoscaler.forecast.base import ForecastError
from autoscaler.forecast.driver import impute
from autoscaler.forecast.registry import create, fit_model, is_seasonal, names
from autoscaler.sim.traces import TraceError
from autoscaler.sim.workload import load_trace

DEFAULT_TRACE = "nasa_http_jul95_60s"


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--trace", default=DEFAULT_TRACE, help=f"shipped trace name or CSV path (default {DEFAULT_TRACE})"
    )
    parser.add_argument("--model", default="auto", choices=["auto", *names()], help="model (default auto)")
    parser.add_argument("--step-s", type=float, default=60.0, help="forecast step, seconds (default 60)")
    parser.add_argument("--horizon-s", type=float, default=600.0, help="forecast horizon, seconds (default 600)")
    parser.add_argument("--season-s", type=float, default=86_400.0, help="season length, seconds (default 1 day)")
    parser.add_argument("--start-s", type=float, default=None, help="window start in the trace, seconds")
    parser.add_argument("--duration-s", type=float, default=None, help="window length, seconds")
    parser.add_argument("--level", type=float, default=0.95, help="central interval level (default 0.95)")
    parser.add_argument("--no-mask-gaps", action="store_true", help="keep logging gaps as zero load")
    parser.add_argument("--plot", type=Path, default=None, metavar="PNG", help="write a plot of the forecast")


def per_step_rps(path: str, step_s: float, args: argparse.Namespace) -> tuple[FloatArray, str]:
    """The trace window as requests/s per step (NaN in masked gaps) and its display name."""
    tr = load_trace(path, start_s=args.start_s, duration_s=args.duration_s, mask_gaps=not args.no_mask_gaps)
    if tr.timestamps_s is not None:
        edges = np.arange(0.0, tr.duration_s + step_s, step_s)
        counts, _ = np.histogram(tr.timestamps_s, bins=edges)
        return counts.astype(np.float64) / step_s, tr.name
    assert tr.counts is not None and tr.step_s is not None
    ratio = step_s / tr.step_s
    if ratio < 1 or abs(ratio - round(ratio)) > 1e-9:
        raise ValueError(f"--step-s {step_s:g} must be a whole multiple of the trace's {tr.step_s:g} s step")
    r = round(ratio)
    c = tr.counts[: len(tr.counts) // r * r].reshape(-1, r)
    with np.errstate(invalid="ignore"):
        return c.sum(axis=1) / step_s, tr.name  # any masked interval makes the step missing


def print_table(sel: Selection, horizon: int, step_s: float, requested: str) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    if sel.scores:
        table = Table(title=f"rolling-origin backtest, horizon {horizon} step(s) = {horizon * step_s:g} s")
        for col in ("model", "MASE", "vs seasonal-naive", f"coverage @{sel.scores[sel.name].level:g}", "origins"):
            table.add_column(col, justify="left" if col == "model" else "right")
        sn = sel.scores.get("seasonal-naive")
        for name, s in sorted(sel.scores.items(), key=lambda kv: kv[1].mase):
            mark = " *" if name == requested or (requested == "auto" and name == sel.name) else ""
            ratio = f"{s.mase / sn.mase:.3f}" if sn and sn.mase > 0 else "-"
            table.add_row(name + mark, f"{s.mase:.3f}", ratio, f"{s.coverage:.3f}", str(s.origins))
        console.print(table)
    console.print(f"selected: [bold]{requested if requested != 'auto' else sel.name}[/bold]  ({sel.note})")


def run(args: argparse.Namespace) -> int:
    try:
        return _run(args)
    except (ForecastError, TraceError, FileNotFoundError, ValueError) as exc:
        print(f"forecast: {exc}", file=sys.stderr)
        return 2


def _run(args: argparse.Namespace) -> int:
    if not (args.step_s > 0 and args.horizon_s > 0 and args.season_s >= args.step_s and 0 < args.level < 1):
        raise ValueError("expected --step-s > 0, --horizon-s > 0, --season-s >= --step-s, 0 < --level < 1")
    y_raw, trace_name = per_step_rps(args.trace, args.step_s, args)
    valid = np.flatnonzero(~np.isnan(y_raw))
    if len(valid) == 0:
        raise ValueError(f"{trace_name}: the window has no data")
    y_raw = y_raw[valid[0] : valid[-1] + 1]
    m = max(round(args.season_s / args.step_s), 1)
    y = impute(y_raw, m)
    h = max(math.ceil(args.horizon_s / args.step_s), 1)
    print(
        f"{trace_name}: {len(y)} steps of {args.step_s:g} s ({len(y) * args.step_s / 3600:.1f} h), "
        f"{int(np.isnan(y_raw).sum())} missing steps imputed, season {m} steps, mean {np.mean(y):.3g} req/s"
    )
    if args.model == "auto":
        sel = select(y, args.step_s, m, horizon=h, level=args.level)
        model = sel.forecaster
    else:
        cands = list(dict.fromkeys([args.model, "seasonal-naive", "naive"]))
        cands = [c for c in cands if m >= 2 or not is_seasonal(c)]
        sel = select(y, args.step_s, m, horizon=h, level=args.level, candidates=cands)
        model = sel.forecaster if sel.name == args.model else fit_model(args.model, y, args.step_s, m)
    print_table(sel, h, args.step_s, args.model)
    origin_s = len(y) * args.step_s
    fc = model.predict(h, origin_s=origin_s, level=args.level)
    print(f"forecast from t={origin_s:g} s ({model.name}, {args.level:.0%} interval), req/s:")
    for i in range(min(h, 12)):
        print(f"  +{(i + 1) * args.step_s:>7g} s  {fc.mean[i]:10.3f}  [{fc.lo[i]:.3f}, {fc.hi[i]:.3f}]")
    if args.plot is not None:
        plot(args, y_raw, y, m, h, model.name, fc.mean, fc.lo, fc.hi, trace_name)
        print(f"wrote {args.plot}")
    return 0


def plot(
    args: argparse.Namespace,
    y_raw: FloatArray,
    y: FloatArray,
    m: int,
    h: int,
    name: str,
    mean: FloatArray,
    lo: FloatArray,
    hi: FloatArray,
    trace_name: str,
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    step_h = args.step_s / 3600.0
    n = len(y)
    show = min(n, max(2 * m, 200)) if m > 1 else n
    t = (np.arange(n) + 1) * step_h
    fig, ax = plt.subplots(figsize=(12, 4.5))
    ax.plot(t[n - show :], y_raw[n - show :], lw=0.7, color="0.3", label="observed")
    test = min(m, BACKTEST_STEPS, max(n - create(name, season_length=m).min_length(), 0))
    if test > h + 1:
        a, bm, blo, bhi = backtest(create(name, season_length=m), y, args.step_s, test_steps=test, horizon=h)
        tb = t[n - test + h - 1 : n - test + h - 1 + len(a)]
        ax.plot(tb, bm, lw=0.9, color="tab:blue", label=f"backtest {h}-step-ahead mean")
        ax.fill_between(tb, blo, bhi, color="tab:blue", alpha=0.2, lw=0, label=f"{args.level:.0%} interval")
    tf = t[-1] + (np.arange(h) + 1) * step_h
    ax.plot(tf, mean, color="tab:red", lw=1.2, label=f"forecast ({name})")
    ax.fill_between(tf, lo, hi, color="tab:red", alpha=0.2, lw=0)
    ax.set_xlabel("hours from window start")
    ax.set_ylabel("requests/s")
    ax.set_title(f"{trace_name}: {name}, step {args.step_s:g} s, horizon {h * args.step_s:g} s")
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    args.plot.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.plot, dpi=110)
    plt.close(fig)
