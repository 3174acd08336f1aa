"""What users get: every policy at its documented default, and leave-one-trace-out tuning.

Users do not tune a knob per trace with hindsight: they install a policy with its defaults and an
SLO. This benchmark replays, on every fold,

* every policy at its **documented default** (ours in `hpa` mode, as users run it; `predictive-direct`
  for `mode: direct`), and
* every setting of every policy's main knob (the sweep's grid, `sim.sweep.knob_grid`, which
  includes each default),

then reports per fold: attainment, replica-hours × oracle and whether the 99.9 % goal was met at
the default; and **leave-one-trace-out**: each policy's single setting chosen on the *tuning* folds
other than the scored one (the cheapest mean × oracle among the settings that meet the goal on all
of them; if none does, the one that meets it on most), scored on the held-out fold. The held-out
folds (other weeks and days of the long traces) are never used to choose anything, ours included:
our shipped defaults were set before these folds were first replayed, and the LOTO choice below
only reads tuning folds.

    .venv/bin/python benchmarks/default_settings.py [--jobs 2] [--quick]

Writes benchmarks/results/default_settings.json and prints rich tables.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from autoscaler.core.surge import SURGE_BUDGET_SHARE, SURGE_POOL_QUANTILE
from autoscaler.sim import sweep
from autoscaler.sim.policies import registry

RESULTS = Path(__file__).resolve().parent / "results" / "default_settings.json"
DAY_S = 86_400.0
HALF_DAY_S = 43_200.0
GOAL_NOTE = "goal: SLO attainment >= the spec's goal (99.9 % of requests within the latency SLO)"
# settings of our surge reserve tried beside the default (core.surge.SURGE_BUDGET_SHARE, SURGE_POOL_QUANTILE):
# the budget share jointly with how the days' ratios are pooled ("history": the whole history as one)
SURGE_SETTINGS = tuple(
    {"surge_pool": pool, "surge_share": share}
    for pool in ("history", 0.5, 0.75)
    for share in (0.125, 0.25, 0.5, 1.0)
    if (pool, share) != (SURGE_POOL_QUANTILE or "history", SURGE_BUDGET_SHARE)
)
ROW_KEYS = ("fold", "policy", "slo_attainment", "meets_slo", "replica_hours", "x_oracle")
CAUSAL = ("predictive", "predictive-direct", "hpa-cpu", "hpa-rps", "keda", "kpa", "phpa")


@dataclass(frozen=True)
class Fold:
    name: str
    scenario: str  # a shipped scenario (simulations/<name>.yaml)
    overrides: dict[str, Any] = field(default_factory=dict)  # window: start_s, duration_s, history_s
    tuning: bool = True  # False: held out, never used to choose a setting


# The shipped scenarios (windows of at least 12 h where the trace allows), used for tuning ...
TUNING = (
    Fold("azure-functions-8h", "azure-functions-8h"),
    Fold("azure-llm-code-1h", "azure-llm-code-1h"),
    Fold("nasa-60s", "nasa-60s-7d", {"duration_s": 43_200.0}),
    Fold("worldcup98", "worldcup98-7d", {"duration_s": 43_200.0}),
    Fold("servegen", "servegen-7d", {"duration_s": DAY_S}),
    Fold("nasa-1s", "nasa-1s-7d", {"duration_s": 43_200.0}),
)
# ... and further folds from other weeks/days of the long traces, held out.
HELD_OUT = (
    Fold("nasa-60s-day22", "nasa-60s-7d", {"start_s": 21 * DAY_S, "duration_s": HALF_DAY_S}, tuning=False),
    Fold("nasa-60s-day25", "nasa-60s-7d", {"start_s": 24 * DAY_S, "duration_s": HALF_DAY_S}, tuning=False),
    Fold("worldcup98-day41", "worldcup98-7d", {"start_s": 40 * DAY_S, "duration_s": HALF_DAY_S}, tuning=False),
    Fold("worldcup98-day76", "worldcup98-7d", {"start_s": 75 * DAY_S, "duration_s": HALF_DAY_S}, tuning=False),
    Fold("servegen-day4", "servegen-7d", {"start_s": 3 * DAY_S, "duration_s": DAY_S, "history_s": 3 * DAY_S}, False),
    Fold("nasa-1s-day19", "nasa-1s-7d", {"start_s": 18 * DAY_S, "duration_s": 43_200.0}, tuning=False),
    Fold("nasa-60s-day18", "nasa-60s-7d", {"start_s": 17 * DAY_S, "duration_s": HALF_DAY_S}, tuning=False),
    Fold("worldcup98-day56", "worldcup98-7d", {"start_s": 55 * DAY_S, "duration_s": HALF_DAY_S}, tuning=False),
    Fold("servegen-day10", "servegen-7d", {"start_s": 9 * DAY_S, "duration_s": DAY_S}, tuning=False),
    Fold("nasa-1s-day12", "nasa-1s-7d", {"start_s": 11 * DAY_S, "duration_s": 43_200.0}, tuning=False),
)


def _run(fold: Fold, policy: str, knobs: dict[str, Any]) -> dict[str, Any]:
    row = sweep.run_task(sweep.SweepTask(fold.scenario, policy, knobs, dict(fold.overrides)))
    row["fold"] = fold.name
    row["tuning"] = fold.tuning
    row["default"] = not knobs
    return row


def plan(folds: tuple[Fold, ...], policies: list[str], grid: bool) -> list[tuple[Fold, str, dict[str, Any]]]:
    tasks: list[tuple[Fold, str, dict[str, Any]]] = []
    for fold in folds:
        spec = sweep._inputs(fold.scenario, dict(fold.overrides)).spec
        for pol in policies:
            tasks.append((fold, pol, {}))  # the documented default: no knob passed at all
            if grid and pol in CAUSAL and pol != "predictive-direct":  # direct: its default only
                default = sweep.default_knobs(pol, spec)  # already run as {} above
                tasks.extend((fold, pol, k) for k in sweep.knob_grid(pol, spec) if k and k != default)
                if pol == "predictive":  # the surge reserve's budget share and pooling, our other defaults
                    tasks.extend((fold, pol, dict(k)) for k in SURGE_SETTINGS)
    slow = {"predictive": 0, "predictive-direct": 0, "kpa": 1, "phpa": 2}
    tasks.sort(key=lambda t: slow.get(t[1], 9))
    return tasks


def _key(knobs: dict[str, Any]) -> str:
    return json.dumps(knobs, sort_keys=True)


def loto(rows: list[dict[str, Any]], folds: tuple[Fold, ...], oracle: dict[str, float]) -> list[dict[str, Any]]:
    """Per (fold, causal policy): the setting chosen on the tuning folds other than this one, and its score here."""
    out: list[dict[str, Any]] = []
    ok = [r for r in rows if "error" not in r]
    for fold in folds:
        train = [f.name for f in folds if f.tuning and f.name != fold.name]
        for pol in CAUSAL:
            by_setting: dict[str, dict[str, dict[str, Any]]] = {}
            for r in ok:
                if r["policy"] == pol:
                    by_setting.setdefault(_key(r["knobs"]), {})[r["fold"]] = r
            scored = []
            for key, per_fold in by_setting.items():
                if fold.name not in per_fold or not all(f in per_fold for f in train):
                    continue
                met = sum(bool(per_fold[f]["meets_slo"]) for f in train)
                cost = sum(per_fold[f]["replica_hours"] / oracle[f] for f in train) / max(1, len(train))
                scored.append((-met, cost, key))
            if not scored:
                continue
            _, _, key = min(scored)
            r = by_setting[key][fold.name]
            out.append(
                {
                    "fold": fold.name,
                    "fold_is_tuning": fold.tuning,
                    "policy": pol,
                    "chosen_knobs": json.loads(key),
                    "chosen_meets_all_training": -min(scored)[0] == len(train),
                    "slo_attainment": r["slo_attainment"],
                    "meets_slo": r["meets_slo"],
                    "replica_hours": r["replica_hours"],
                    "x_oracle": r["replica_hours"] / oracle[fold.name],
                }
            )
    return out


def chosen_on_tuning(
    rows: list[dict[str, Any]], folds: tuple[Fold, ...], oracle: dict[str, float]
) -> list[dict[str, Any]]:
    """Per causal policy: the setting the tuning folds choose (the LOTO rule over all of them), and how
    it does on each held-out fold. This is how a default is chosen without looking at what is scored."""
    tuning = [f.name for f in folds if f.tuning]
    out: list[dict[str, Any]] = []
    for pol in CAUSAL:
        per: dict[str, dict[str, dict[str, Any]]] = {}
        for r in rows:
            if r["policy"] == pol and "error" not in r:
                per.setdefault(_key(r["knobs"]), {})[r["fold"]] = r
        scored = [
            (-sum(bool(v[f]["meets_slo"]) for f in tuning), sum(v[f]["replica_hours"] / oracle[f] for f in tuning), k)
            for k, v in per.items()
            if all(f in v for f in tuning)
        ]
        if not scored:
            continue
        met, cost, key = min(scored)
        held = {f.name: per[key].get(f.name) for f in folds if not f.tuning}
        out.append(
            {
                "policy": pol,
                "knobs": json.loads(key),
                "tuning_folds_met": -met,
                "tuning_folds": len(tuning),
                "tuning_mean_x_oracle": cost / len(tuning),
                "held_out": {
                    f: {"slo_attainment": r["slo_attainment"], "meets_slo": r["meets_slo"], "x_oracle": r["x_oracle"]}
                    for f, r in held.items()
                    if r is not None
                },
            }
        )
    return out


def cheapest_causal(rows: list[dict[str, Any]], key: str = "replica_hours") -> dict[str, str | None]:
    """Per fold: the causal policy with the fewest replica-hours among those meeting the goal."""
    out: dict[str, str | None] = {}
    for fold in sorted({r["fold"] for r in rows}):
        passing = [r for r in rows if r["fold"] == fold and r["meets_slo"] and r["policy"] in CAUSAL]
        out[fold] = min(passing, key=lambda r: r[key])["policy"] if passing else None
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--quick", action="store_true", help="defaults only (no grid, no LOTO)")
    ap.add_argument("--folds", help="comma-separated subset of fold names")
    ap.add_argument("--policies", help="comma-separated subset of policies (the oracle always runs)")
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args()
    console = Console(width=160)
    folds = TUNING + HELD_OUT
    if args.folds:
        want = set(args.folds.split(","))
        folds = tuple(f for f in folds if f.name in want)
    policies = registry.names()
    if args.policies:
        policies = [p for p in policies if p in {*args.policies.split(","), "oracle"}]
    tasks = plan(folds, policies, grid=not args.quick)
    console.print(f"{len(tasks)} replays on {args.jobs} processes")
    t0 = time.perf_counter()
    rows: list[dict[str, Any]] = []
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        futures = [pool.submit(_run, *t) for t in tasks]
        for f in as_completed(futures):
            rows.append(f.result())
            if len(rows) % 20 == 0:
                console.print(f"  {len(rows)}/{len(tasks)} ({time.perf_counter() - t0:.0f} s)")
    wall_s = time.perf_counter() - t0
    errors = [r for r in rows if "error" in r]
    ok = [r for r in rows if "error" not in r]
    oracle = {r["fold"]: r["replica_hours"] for r in ok if r["policy"] == "oracle"}
    for r in ok:
        r["x_oracle"] = r["replica_hours"] / oracle[r["fold"]] if oracle.get(r["fold"]) else math.nan

    default_rows = [r for r in ok if r["default"]]
    table = Table(title=f"Every policy at its documented default ({GOAL_NOTE})")
    table.add_column("fold")
    table.add_column("set")
    names = [p for p in policies if any(r["policy"] == p for r in default_rows)]
    for p in names:
        table.add_column(p, justify="right")
    for fold in folds:
        cells = []
        for p in names:
            r = next((x for x in default_rows if x["fold"] == fold.name and x["policy"] == p), None)
            if r is None:
                cells.append("–")
                continue
            mark = "✓" if r["meets_slo"] else "✗"
            cells.append(f"{r['slo_attainment'] * 100:.2f}% {r['x_oracle']:.2f}× {mark}")
        table.add_row(fold.name, "tune" if fold.tuning else "held-out", *cells)
    console.print(table)

    loto_rows = loto(ok, folds, oracle) if not args.quick else []
    if loto_rows:
        lt = Table(title="Leave-one-trace-out: setting chosen on the other tuning folds, scored here")
        lt.add_column("fold")
        for p in CAUSAL:
            lt.add_column(p, justify="right")
        for fold in folds:
            cells = []
            for p in CAUSAL:
                r = next((x for x in loto_rows if x["fold"] == fold.name and x["policy"] == p), None)
                if r is None:
                    cells.append("–")
                    continue
                mark = "✓" if r["meets_slo"] else "✗"
                cells.append(f"{r['slo_attainment'] * 100:.2f}% {r['x_oracle']:.2f}× {mark}")
            lt.add_row(fold.name, *cells)
        console.print(lt)
    chosen = chosen_on_tuning(ok, folds, oracle) if not args.quick else []
    for c in chosen:
        held = c["held_out"]
        met = sum(v["meets_slo"] for v in held.values())
        console.print(
            f"{c['policy']}: the tuning folds choose {json.dumps(c['knobs'])} (meets {c['tuning_folds_met']}/"
            f"{c['tuning_folds']} tuning folds); on the held-out folds it meets {met}/{len(held)}"
        )
    cheapest_default = cheapest_causal(default_rows)
    cheapest_loto = cheapest_causal(loto_rows) if loto_rows else {}
    console.print(f"cheapest causal policy meeting the goal at defaults: {cheapest_default}")
    if cheapest_loto:
        console.print(f"cheapest causal policy meeting the goal, leave-one-trace-out: {cheapest_loto}")
    doc = {
        "benchmark": "default_settings",
        "goal": GOAL_NOTE,
        "wall_s": wall_s,
        "folds": [
            {"name": f.name, "scenario": f.scenario, "overrides": f.overrides, "tuning": f.tuning} for f in folds
        ],
        "defaults": [{k: r.get(k) for k in (*ROW_KEYS, "tuning", "mode", "p99_ms", "rejected")} for r in default_rows],
        "loto": loto_rows,
        "chosen_on_tuning_folds": chosen,
        "cheapest_causal_at_defaults": cheapest_default,
        "cheapest_causal_loto": cheapest_loto,
        "grid": [{k: r.get(k) for k in (*ROW_KEYS, "knobs")} for r in ok if not r["default"]],
        "errors": [{k: r.get(k) for k in ("fold", "policy", "knobs", "error")} for r in errors],
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=1, default=str) + "\n")
    console.print(f"wrote {args.out} ({wall_s:.0f} s, {len(errors)} errors)")
    return 0 if not errors else 1


if __name__ == "__main__":
    raise SystemExit(main())
